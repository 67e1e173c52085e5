"""What each dependency adds to an agent's resident memory (a benchmark, not a test): each set of
imports in a fresh interpreter, its RSS and PSS after the import minus a bare interpreter's, median
of ``--runs``. The options weighed for issue 26's idle-RSS goal: psycopg's C (binary) against
its pure-Python implementation, aiohttp's client alone against client and web server, pydantic
and pgha's config model, and the whole agent. (Patroni's whole agent, for scale, is in bench/idle.py.)

    PYTHONPATH=. .venv/bin/python bench/imports.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = ("import sys, importlib\n"
         "for m in sys.argv[1:]: importlib.import_module(m)\n"
         "from bench.procmem import memory_mib\n"
         "import os\n"
         "rss, pss = memory_mib(os.getpid())\n"
         "print(rss, pss)\n")

OPTIONS: list[tuple[str, dict[str, str], list[str]]] = [
    ("bare interpreter + asyncio", {}, ["asyncio"]),
    ("psycopg (binary, C)", {}, ["asyncio", "psycopg"]),
    ("psycopg (pure Python, system libpq)", {"PSYCOPG_IMPL": "python"}, ["asyncio", "psycopg"]),
    ("aiohttp client", {}, ["asyncio", "aiohttp"]),
    ("aiohttp client + web server", {}, ["asyncio", "aiohttp", "aiohttp.web"]),
    ("pydantic", {}, ["asyncio", "pydantic"]),
    ("pydantic + pgha config model", {}, ["asyncio", "pgha.config.model"]),
    ("prometheus-client", {}, ["asyncio", "prometheus_client"]),
    ("pgha decision core alone", {}, ["asyncio", "pgha.core.decide"]),
    ("the whole agent", {}, ["asyncio", "pgha.agent.service", "pgha.api.server"]),
]


def sample(python: str, env: dict[str, str], modules: list[str]) -> tuple[float, float]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([python, "-c", PROBE, *modules], env={**os.environ, "PYTHONPATH": str(root), **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def median(python: str, env: dict[str, str], modules: list[str], runs: int) -> tuple[float, float]:
    got = [sample(python, env, modules) for _ in range(runs)]
    return statistics.median(r for r, _ in got), statistics.median(p for _, p in got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base_rss, base_pss = median(sys.executable, {}, [], args.runs)
    print(f"bare interpreter: RSS {base_rss:.1f} MiB, PSS {base_pss:.1f} MiB (median of {args.runs})")
    print(f"{'imports':40} {'+RSS MiB':>9} {'+PSS MiB':>9}")
    for name, env, modules in OPTIONS:
        rss, pss = median(sys.executable, env, modules, args.runs)
        print(f"{name:40} {rss - base_rss:9.1f} {pss - base_pss:9.1f}")


if __name__ == "__main__":
    main()
