"""Fence benchmark (not a test), two parts.

``deadline``: from the fence's deadline to the postmaster gone. A stand-in postmaster (a sleeping
process whose command line names postgres, leading its own process group as pgha's postmaster
does) is fenced with a deadline 0.3 s ahead; the time from the deadline to its death is measured
on CLOCK_BOOTTIME, over --runs runs.

``lab``: in the partition lab (root), each fault of ``tests/partition.FAULTS`` --runs times in
strict synchronous and in asynchronous mode, with clients through HAProxy and straight to every
node: writes the old primary ran after the new primary's first write ("late", by the server's
clock), acknowledgements the network or a freeze held back past that instant ("delayed"), and
acknowledged writes lost, per scenario (median and max over the runs).

    .venv/bin/python bench/fence.py deadline [--runs 20]
    PYTHONPATH=. .venv/bin/python bench/fence.py lab [--runs 10] [--modes sync,async] [--faults ...] \
        [--timing 20,2,3]
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


def deadline(runs: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        times = sorted(one(Path(base)) * 1000 for _ in range(runs))
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    print(f"deadline to postmaster gone over {runs} runs: median {statistics.median(times):.1f} ms, "
          f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms (target: under 100 ms)")


def lab(runs: int, modes: list[str], faults: list[str] | None, timing: dict[str, float] | None) -> None:
    from pgha.testing.netlab import why_not_available
    from tests.partition import FAULTS, Recorder, open_lab, settle

    problem = why_not_available()
    if problem:
        raise SystemExit(problem)
    rows: list[tuple[str, str, list[int], list[int], list[int]]] = []
    for mode in modes:
        with open_lab(mode, f"b{os.getpid() % 10000}{mode[0]}", timing) as made:
            for name, fault in FAULTS.items():
                if faults and name not in faults:
                    continue
                late: list[int] = []
                delayed: list[int] = []
                lost: list[int] = []
                for _ in range(runs):
                    settle(made)
                    with Recorder(made) as rec:
                        fault(made, rec)
                        report = rec.report(name)
                    late.append(len(report.late) + len(report.inflight))  # as measured before the split
                    delayed.append(len(report.delayed))
                    lost.append(len(report.lost))
                rows.append((mode, name, late, delayed, lost))
    print(f"\nper scenario over {runs} runs: late = run by the old primary after the new one's first "
          "write; delayed = run before it, acknowledged after; lost = acknowledged, then gone")
    for mode, name, late, delayed, lost in rows:
        print(f"  {mode:5} {name:36} late median {statistics.median(late):3.0f} max {max(late):3}   "
              f"delayed median {statistics.median(delayed):3.0f} max {max(delayed):3}   "
              f"lost median {statistics.median(lost):6.0f} max {max(lost):6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", choices=["deadline", "lab"], default="deadline")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--faults", default="", help="comma-separated names from tests/partition.FAULTS (default: all)")
    ap.add_argument("--timing", default="", help="ttl,loop_wait,retry_timeout (default: 6,1,2)")
    args = ap.parse_args()
    if args.part == "deadline":
        deadline(args.runs or 20)
    else:
        timing = dict(zip(("ttl", "loop_wait", "retry_timeout"), map(float, args.timing.split(",")))) if args.timing else None
        if timing:
            timing["ttl"] = int(timing["ttl"])
        lab(args.runs or 10, args.modes.split(","), [f for f in args.faults.split(",") if f], timing)


if __name__ == "__main__":
    main()
