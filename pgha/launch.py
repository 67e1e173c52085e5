"""The ``pgha`` command's entry point. ``pgha agent`` first runs ``agent.quickstart`` (standard
library and PyYAML only), so that a restarted primary agent has its leader key and its fence back
before the rest of pgha is even imported; then the command group runs as usual."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from pgha.agent import quickstart

    adopted = quickstart.run(sys.argv[1:], os.environ)
    from pgha.cli.main import main as group

    group(obj={"adopted": adopted})
