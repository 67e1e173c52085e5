"""What clients see of a role change, side by side in one run: pgha + HAProxy (checks only),
pgha + HAProxy with the runtime push, and pgha + PgBouncer driven by ``pgha pooler``.
Not a test: nothing here asserts a time.

Workload (``pgha.testing.workload``): 30 clients of short autocommit writes, one client in 1 s
transactions, one idle connection. Events: a planned switchover, and a SIGKILL of the primary's
node (agent and Postgres). Per system and event it reports failed statements, dropped
connections, the added latency of short statements started in the event's window (p50 / p99 /
max, over their median latency before the event) and the most added to a 1 s transaction, the write gap (longest time without an
acknowledged write), after a kill the time from the new primary's first ``/primary`` 200 to the
first write acknowledged through the system, whether the idle connection survived, and acknowledged writes missing on
the primary afterwards: those sent after the event (acknowledged by a non-primary; must be 0)
apart from those sent before a kill (an asynchronous primary's unreplicated tail).

    .venv/bin/python bench/transparent.py [--runs 3] [--events switchover,kill] [--systems ...]

Systems: ``haproxy`` (checks only: inter 500 ms, fall 2, rise 1), ``haproxy+push``,
``pgbouncer``, ``pgbouncer+cut`` (``pooler_pause_timeout`` 0.2 s: the statements of transactions
still open 0.2 s into the hand-over are cancelled, bounding everyone else's wait), ``patroni`` (Patroni 4.1.5, installed
from PyPI into its own venv by ``pgha.testing.patroni``, behind the same HAProxy with our check
settings) and ``patroni-sample`` (the same with Patroni's sample haproxy.cfg checks: inter 3s,
fall 3, rise 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgha.postgres import processes
from pgha.testing import FAST, EtcdCluster, HAProxy, LocalCluster, http_get, http_request, wait_for
from pgha.testing.patroni import PatroniCluster
from pgha.testing.pooler import Pooled, PoolerWatcher
from pgha.testing.workload import Tally, Workload, missing_on, sent_since

WINDOW = 15.0  # seconds after the event in which statements count as affected
OUR_CHECKS = "inter 500ms fall 2 rise 1"  # configs/haproxy.cfg
SAMPLE_CHECKS = "inter 3s fall 3 rise 2"  # Patroni's haproxy.cfg sample
CUT = 0.2  # pooler_pause_timeout of pgbouncer+cut: the longest a switchover waits for open transactions


def _is_primary(api: str) -> bool:
    try:
        return http_get(api + "/primary", 1)[0] == 200
    except OSError:  # a killed node refuses
        return False


def _gap(tally: Tally, t0: float, end: float) -> float:
    """The longest time without an acknowledged write from a second before the event to ``end``
    (writes that never resume count up to ``end``)."""
    acks = sorted(t for t in tally.acked_at if t >= t0 - 1.0) + [end]
    return max((b - a for a, b in zip(acks, acks[1:], strict=False)), default=0.0)


def _event(c: LocalCluster, event: str) -> tuple[float, float]:
    """Fire ``event``; returns the time from which every acknowledgement must be on the final
    primary (a switchover: all of them; a kill: those sent after it, the asynchronous tail
    before it may be lost), and when another node first answered ``/primary`` 200."""
    old = c.leader()
    since = 0.0
    if event == "switchover":
        new = next(n for n in c.nodes if n is not old)
        http_request("POST", old.api + "/switchover", {"leader": old.name, "candidate": new.name}, timeout=30)
    else:
        old.signal_agent(signal.SIGKILL)
        old.kill_postgres(signal.SIGKILL, tree=True)
        since = time.monotonic()
    wait_for("a writable primary", lambda: next((n for n in c.nodes if n is not old
                                                 and n.health("/primary") == 200), None), 60, interval=0.01)
    return since, time.monotonic()


class _PatroniNode:
    """A Patroni node as HAProxy and the events see it."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.raw = node
        self.name = node["name"]
        self.pg_port = int(node["config"]["postgresql"]["listen"].rsplit(":", 1)[1])
        self.api_port = int(node["config"]["restapi"]["listen"].rsplit(":", 1)[1])
        self.api = node["api"]

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=postgres password=supersecret dbname=postgres"


def start_patroni(base: Path, stops: list[Callable[[], None]]) -> tuple[PatroniCluster, list[_PatroniNode]]:
    """A 3-node Patroni 4.1.5 cluster on its own etcd, at the timing pgha's side runs with."""
    etcd = EtcdCluster(base, 1)
    etcd.start()
    stops.append(etcd.stop)
    pc = PatroniCluster(base / "patroni", etcd.hosts, {"ttl": 6, "loop_wait": 1, "retry_timeout": 2})
    stops.append(pc.stop)
    pc.start()
    return pc, [_PatroniNode(n) for n in pc.nodes]


def _patroni(base: Path, stops: list[Callable[[], None]]) -> tuple[list[_PatroniNode],
                                                                   Callable[[str], tuple[float, float]]]:
    pc, nodes = start_patroni(base, stops)

    def leader() -> _PatroniNode:
        return wait_for("a Patroni primary", lambda: next((n for n in nodes if _is_primary(n.api)), None), 60)

    def event(kind: str) -> tuple[float, float]:
        old = leader()
        since = 0.0
        if kind == "switchover":
            new = next(n for n in nodes if n is not old)
            http_request("POST", old.api + "/switchover", {"leader": old.name, "candidate": new.name}, timeout=60)
        else:
            old.raw["proc"].kill()
            pm = (base / "patroni" / old.name / "data" / "postmaster.pid").read_text().split()[0]
            for pid in [int(pm), *processes.children(int(pm))]:  # the whole node, as for pgha
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            since = time.monotonic()
        wait_for("a new Patroni primary", lambda: next((n for n in nodes if n is not old
                                                        and _is_primary(n.api)), None), 60, interval=0.01)
        return since, time.monotonic()
    return nodes, event


def one(system: str, event: str) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-"))
    base.chmod(0o755)  # Patroni runs as postgres
    stops: list[Callable[[], None]] = []
    if system.startswith("patroni"):
        try:
            return _patroni_run(base, event, stops, SAMPLE_CHECKS if system == "patroni-sample" else OUR_CHECKS)
        finally:
            for stop in reversed(stops):
                stop()
            shutil.rmtree(base, ignore_errors=True)
    c = LocalCluster(base, dcs={**FAST, "pooler_pause_timeout": CUT} if system == "pgbouncer+cut" else None)
    try:
        c.start()
        proxy = HAProxy(base, c.nodes)
        proxy.start()
        stops.append(proxy.stop)
        port = proxy.write_port
        if system == "haproxy+push":
            w = PoolerWatcher(base / "push", {"scope": c.scope, "name": "push", "etcd": {"hosts": c.etcd.hosts},
                                               "lease_ttl": 4, "haproxy": {"socket": str(proxy.socket)}})
            w.start()
            stops.append(w.stop)
        dsn = f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres"
        if system.startswith("pgbouncer"):
            p = Pooled(c, base / "pooler")
            p.start(primary_port=c.leader().pg_port)
            stops.append(p.stop)
            dsn = p.bouncer.dsn()
        return _measure(dsn, lambda: _event(c, event), lambda: c.leader().dsn())
    finally:
        for stop in reversed(stops):
            stop()
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _patroni_run(base: Path, event: str, stops: list[Callable[[], None]], checks: str) -> dict[str, Any]:
    nodes, fire = _patroni(base, stops)
    proxy = HAProxy(base, nodes, checks)
    proxy.start()
    stops.append(proxy.stop)
    dsn = f"host=127.0.0.1 port={proxy.write_port} user=postgres password=supersecret dbname=postgres"
    primary = lambda: next(n for n in nodes if _is_primary(n.api)).dsn()  # noqa: E731
    return _measure(dsn, lambda: fire(event), primary)


def _measure(dsn: str, fire: Callable[[], tuple[float, float]], primary_dsn: Callable[[], str]) -> dict[str, Any]:
    time.sleep(2.0)
    load = Workload(dsn, clients=30, long_tx=True, idle=True)
    load.setup()
    load.start()
    time.sleep(3.0)
    before = statistics.median(d for _, d in load.tally.latencies) if load.tally.latencies else 0.0
    t0 = time.monotonic()
    since, writable = fire()
    time.sleep(3.0)
    end = time.monotonic()
    tally = load.stop()
    added = sorted(max(0.0, d - before) for s, d in tally.latencies if t0 - 1.0 <= s <= t0 + WINDOW)
    missing = set(missing_on(primary_dsn(), tally.acked))
    after = missing.intersection(sent_since(tally, since))
    return {"failed": tally.failed, "dropped": tally.dropped, "gap": _gap(tally, t0, end),
            "p50": added[len(added) // 2] if added else 0.0,
            "p99": added[int(len(added) * 0.99)] if added else 0.0, "max": added[-1] if added else 0.0,
            "long_max": max((d for s, d in tally.long_latencies if t0 - 1.0 <= s <= t0 + WINDOW), default=0.0),
            # after a kill: from the new primary's first /primary 200 to the first write acknowledged
            "first_write": min((t for t in tally.acked_at if t >= writable), default=end) - writable,
            "idle_kept": load.idle_survived(), "non_primary_acks": len(after), "lost_tail": len(missing - after)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", default="switchover,kill")
    ap.add_argument("--systems", default="patroni,patroni-sample,haproxy,haproxy+push,pgbouncer,pgbouncer+cut")
    args = ap.parse_args()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.runs):
        for event in args.events.split(","):
            for system in args.systems.split(","):
                r = one(system, event)
                results.setdefault((system, event), []).append(r)
                print(f"{system:14} {event:10} {r}", flush=True)
    print("\nmedians over runs (failed, dropped, gap s, added latency of short writes p50/p99/max s and of the 1 s"
          " transactions, idle kept; summed: acks"
          " by a non-primary, acks lost with an asynchronous primary's unreplicated tail)")
    for (system, event), rs in results.items():
        med = {k: statistics.median(float(r[k]) for r in rs)
               for k in ("failed", "dropped", "gap", "p50", "p99", "max", "long_max", "first_write")}
        print(f"{system:14} {event:10} failed {med['failed']:.0f}  dropped {med['dropped']:.0f}  gap {med['gap']:.2f}  "
              f"added {med['p50']:.3f}/{med['p99']:.3f}/{med['max']:.3f}  long tx +{med['long_max']:.2f}  "
              f"first write after writable {med['first_write']:.3f}  idle kept {all(r['idle_kept'] for r in rs)}  "
              f"non-primary acks {sum(r['non_primary_acks'] for r in rs)}  lost tail {sum(r['lost_tail'] for r in rs)}")


if __name__ == "__main__":
    main()
