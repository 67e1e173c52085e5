"""Fence benchmark (not a test): from the fence's deadline to the postmaster gone.

A stand-in postmaster (a sleeping process whose command line names postgres, leading its own
process group as pgha's postmaster does) is fenced with a deadline 0.3 s ahead; the time from the
deadline to its death is measured on CLOCK_BOOTTIME, over --runs runs.

    .venv/bin/python bench/fence.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FENCE = Path(__file__).resolve().parents[1] / "pgha" / "fence" / "__main__.py"


def one(base: Path) -> float:
    data = Path(tempfile.mkdtemp(dir=base))
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "postgres"],
                              start_new_session=True)
    (data / "postmaster.pid").write_text(f"{victim.pid}\n")
    deadline = time.clock_gettime(time.CLOCK_BOOTTIME) + 0.3
    Path(f"{data}.fence").write_text(f"{deadline}\n")
    fence = subprocess.Popen([sys.executable, str(FENCE), str(data)], start_new_session=True)
    while True:
        pid, _ = os.waitpid(victim.pid, os.WNOHANG)
        if pid:
            gone = time.clock_gettime(time.CLOCK_BOOTTIME)
            break
        time.sleep(0.0005)
    fence.wait(5)
    return gone - deadline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as base:
        times = sorted(one(Path(base)) * 1000 for _ in range(args.runs))
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    print(f"deadline to postmaster gone over {args.runs} runs: median {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms (target: under 100 ms)")


if __name__ == "__main__":
    main()
