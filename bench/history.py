"""History checker, long version: many fault cycles in synchronous (strict) and asynchronous
mode, reporting lost / forked / phantom writes for each. Not a test: asynchronous mode is
expected to lose acknowledged writes sometimes, and the number is printed, not hidden.

    .venv/bin/python bench/history.py [--cycles 20] [--modes sync,async]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from pgha.testing import FAST, HAProxy, LocalCluster
from tests.history import run

MODES = {
    "sync": {**FAST, "synchronous_mode": True, "synchronous_mode_strict": True},
    "async": dict(FAST),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    results = {}
    for mode in args.modes.split(","):
        base = Path(tempfile.mkdtemp(prefix=f"pgha-history-{mode}-"))
        c = LocalCluster(base, dcs=MODES[mode])
        proxy = HAProxy(base, c.nodes)
        try:
            c.start()
            proxy.start()
            report = run(c, proxy, cycles=args.cycles, seed=args.seed, log=lambda line, m=mode: print(f"[{m}] {line}", flush=True))
            results[mode] = report
            print(f"[{mode}] {report.summary()}", flush=True)
        finally:
            proxy.stop()
            c.stop()
            shutil.rmtree(base, ignore_errors=True)
    print("\nhistory checker results")
    for mode, r in results.items():
        kinds = {f: r.faults.count(f) for f in sorted(set(r.faults))}
        print(f"  {mode:5}: {r.summary()}\n         faults: {kinds}")


if __name__ == "__main__":
    main()
