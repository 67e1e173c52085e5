"""The ``pgha`` command: the operator commands of ``pgha.cli`` plus ``pgha agent``."""

from __future__ import annotations

import sys

from pgha.agent.command import agent
from pgha.cli.main import main

main.add_command(agent)

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
