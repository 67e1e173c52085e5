"""A rolling restart after a restart-only parameter change, under reads and writes, side by side
in one run. Not a test: nothing here asserts a time.

- pgha: ``POST /rollout`` (what ``pgha restart --rolling --pending`` sends); the cluster drains
  each replica from the read path, restarts it, then switches over and restarts the old primary.
  Writes go through PgBouncer driven by ``pgha pooler``; reads through HAProxy's read port, the
  same watcher pushing to HAProxy.
- Patroni 4.1.5: ``patronictl restart`` of each member, replicas first, then the primary (in
  place: Patroni does not switch over for a restart). Writes and reads through the same HAProxy
  configuration (our check settings); Patroni has no pooler to drive.

Workload: 8 clients of short autocommit writes and one idle connection; 3 clients each opening a
connection, reading and closing it, in a loop. Reported per system: failed and dropped writes,
failed reads, the added latency of writes and of reads (p50 / p99 / max over the median before),
and the rollout's total time.

    .venv/bin/python bench/rollout.py [--runs 3] [--systems pgha,patroni]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.transparent import _is_primary, start_patroni
from pgha.testing import HAProxy, LocalCluster, http_get, http_request, wait_for
from pgha.testing.patroni import patronictl
from pgha.testing.pooler import Pooled
from pgha.testing.workload import Readers, Workload

PARAMETER = "max_files_per_process"  # postmaster context: a restart applies it
DSN = "host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres"


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] if values else 0.0


def _measure(write_dsn: str, read_dsn: str, roll: Callable[[], None]) -> dict[str, Any]:
    writes = Workload(write_dsn, clients=8, idle=True)
    writes.setup()
    reads = Readers(read_dsn, clients=3)
    writes.start()
    reads.start()
    time.sleep(3.0)
    w_before = statistics.median(d for _, d in writes.tally.latencies)
    r_before = statistics.median(reads.latencies) if reads.latencies else 0.0
    t0, n_reads = time.monotonic(), len(reads.latencies)
    roll()
    took = time.monotonic() - t0
    time.sleep(2.0)
    tally = writes.stop()
    reads.stop()
    w_added = [max(0.0, d - w_before) for s, d in tally.latencies if s >= t0 - 1.0]
    r_added = [max(0.0, d - r_before) for d in reads.latencies[n_reads:]]
    return {"write_failed": tally.failed, "write_dropped": tally.dropped, "read_failed": len(reads.failed),
            "w50": _pct(w_added, 0.5), "w99": _pct(w_added, 0.99), "wmax": max(w_added, default=0.0),
            "r50": _pct(r_added, 0.5), "r99": _pct(r_added, 0.99), "rmax": max(r_added, default=0.0),
            "idle_kept": writes.idle_survived(), "seconds": took}


def _pending(bodies: Callable[[], list[dict[str, Any]]]) -> bool:
    return all(b.get("pending_restart") for b in bodies())


def _pgha(base: Path, stops: list[Callable[[], None]]) -> dict[str, Any]:
    c = LocalCluster(base)
    stops.append(c.stop)
    c.start()
    proxy = HAProxy(base, c.nodes)
    proxy.start()
    stops.append(proxy.stop)
    p = Pooled(c, base / "pooler", haproxy_socket=str(proxy.socket))
    p.start(primary_port=c.leader().pg_port)
    stops.append(p.stop)

    def roll() -> None:
        leader = c.leader()
        http_request("PATCH", leader.api + "/config", {"postgresql": {"parameters": {PARAMETER: 900}}})
        wait_for("every member pending", lambda: _pending(lambda: [n.status() or {} for n in c.nodes]), 60)
        status, reply, _ = http_request("POST", leader.api + "/rollout", {"pending": True, "drain": 3})
        assert status == 202, reply
        wait_for("the rollout over", lambda: ((http_get(c.leader().api + "/cluster")[1] or {}).get("rollout")
                                               or {}).get("state") == "done", 300, interval=0.2)

    return _measure(p.bouncer.dsn(), DSN.format(port=proxy.read_port), roll)


def _back(api: str) -> bool:
    try:
        return _is_primary(api) or http_get(api + "/replica", 1)[0] == 200
    except OSError:
        return False


def _patroni(base: Path, stops: list[Callable[[], None]]) -> dict[str, Any]:
    pc, nodes = start_patroni(base, stops)
    proxy = HAProxy(base, nodes)
    proxy.start()
    stops.append(proxy.stop)

    def roll() -> None:
        http_request("PATCH", nodes[0].api + "/config", {"postgresql": {"parameters": {PARAMETER: 900}}})
        wait_for("every member pending", lambda: _pending(lambda: [http_get(n.api + "/patroni")[1] or {}
                                                                   for n in nodes]), 60)
        leader = next(n for n in nodes if _is_primary(n.api))
        for n in [*(n for n in nodes if n is not leader), leader]:  # replicas first, as an operator would
            subprocess.run([str(patronictl()), "-c", str(pc.config_path(n.name)), "restart", pc.scope, n.name,
                            "--force"], check=True, capture_output=True, timeout=120)
            wait_for(f"{n.name} back", functools.partial(_back, n.api), 60, interval=0.2)

    return _measure(DSN.format(port=proxy.write_port), DSN.format(port=proxy.read_port), roll)


def one(system: str) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-"))
    base.chmod(0o755)  # Patroni runs as postgres
    stops: list[Callable[[], None]] = []
    try:
        return _patroni(base, stops) if system == "patroni" else _pgha(base, stops)
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--systems", default="pgha,patroni")
    args = ap.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.runs):
        for system in args.systems.split(","):
            r = one(system)
            results.setdefault(system, []).append(r)
            print(f"{system:8} {r}", flush=True)
    print("\nmedians over runs (writes failed/dropped, reads failed, added latency p50/p99/max s of writes and of"
          " reads, idle connection kept, rollout seconds)")
    for system, rs in results.items():
        med = {k: statistics.median(float(r[k]) for r in rs) for k in rs[0] if k != "idle_kept"}
        print(f"{system:8} writes failed {med['write_failed']:.0f} dropped {med['write_dropped']:.0f}  "
              f"reads failed {med['read_failed']:.0f}  writes +{med['w50']:.3f}/{med['w99']:.3f}/{med['wmax']:.3f}  "
              f"reads +{med['r50']:.3f}/{med['r99']:.3f}/{med['rmax']:.3f}  "
              f"idle kept {all(r['idle_kept'] for r in rs)}  {med['seconds']:.1f} s")


if __name__ == "__main__":
    main()
