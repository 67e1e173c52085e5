"""The controller process ``pgha pooler`` supervises: ``python -m pgha.pooler.controller FILE``."""

from __future__ import annotations

import sys

from pgha.pooler.command import run_controller

if __name__ == "__main__":
    sys.exit(run_controller(sys.argv[1]))
