"""Soak (not a test): the lowest ttl at which a cluster on a machine whose cores are all saturated
(``stress-ng --cpu N``) sees no unwanted failover, no demotion and no fence firing, and how long a
node death takes at that ttl.

For each ttl (loop_wait 1, retry_timeout as large as ``loop_wait + 2*retry_timeout <= ttl``
allows) a fresh 3-node cluster with 3 etcd members runs under stress-ng for --minutes while every
node's /status is polled each second; then the primary node is killed (agent and postmaster) and
the time to a new primary answering /primary is measured, still under load.

    .venv/bin/python bench/soak.py [--ttls 4,5,6,8] [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pgha.testing import LocalCluster, wait_for


def timing(ttl: int) -> dict[str, int]:
    return {"ttl": ttl, "loop_wait": 1, "retry_timeout": max(1, (ttl - 1) // 2)}


def soak(ttl: int, minutes: float) -> tuple[int, int, int, float | None]:
    """(failovers, demotions, fence firings) during the soak, then node death to a new primary."""
    base = Path(tempfile.mkdtemp(prefix="pgha-soak-"))
    c = LocalCluster(base, etcd_members=3, dcs=timing(ttl))
    stress = None
    try:
        c.start()
        first = c.leader()
        stress = subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count() or 2), "--timeout", f"{int(minutes * 60) + 60}s",
                                   "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        timelines, fired, demoted = set(), 0, 0
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            for n in c.nodes:
                st = n.status() or {}
                if st.get("role") == "primary":
                    timelines.add(st.get("timeline"))
                fired = max(fired, (st.get("fence") or {}).get("fired", 0))
            time.sleep(1)
        for n in c.nodes:
            text = n.log_text()
            demoted += text.count("demoting:")
        failovers = len(timelines) - 1
        leader = c.leader(30)
        t0 = time.monotonic()
        leader.signal_agent(signal.SIGKILL)
        leader.kill_postgres(signal.SIGKILL)
        try:
            wait_for("a new primary", lambda: any(n.health("/primary") == 200 for n in c.nodes if n is not leader),
                     ttl * 4)
            death: float | None = time.monotonic() - t0
        except TimeoutError:
            death = None
        print(f"ttl {ttl:3}: first primary {first.name}; {failovers} failovers, {demoted} demotions, "
              f"{fired} fence firings in {minutes:g} min under stress-ng; node death to a new primary "
              f"{'%.2f s' % death if death is not None else 'none'}", flush=True)
        return failovers, demoted, fired, death
    finally:
        if stress is not None:
            stress.send_signal(signal.SIGTERM)
            stress.wait(10)
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ttls", default="4,5,6,8")
    ap.add_argument("--minutes", type=float, default=10)
    args = ap.parse_args()
    if shutil.which("stress-ng") is None:
        raise SystemExit("stress-ng is not installed: apt-get install stress-ng")
    results = {ttl: soak(ttl, args.minutes) for ttl in sorted(int(t) for t in args.ttls.split(","))}
    calm = [ttl for ttl, (f, d, fired, _) in results.items() if f == 0 and d == 0 and fired == 0]
    if calm:
        death = results[calm[0]][3]
        print(f"\nlowest ttl without an unwanted failover, demotion or fence firing over {args.minutes:g} min: "
              f"{calm[0]} (node death to a new primary {death:.2f} s)" if death else "")
    else:
        print("\nevery ttl tried saw an unwanted failover, demotion or fence firing")


if __name__ == "__main__":
    main()
