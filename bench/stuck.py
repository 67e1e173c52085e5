"""Stuck-corner benchmark (not a test): how long clients are without a primary, over --runs runs
on one 3-node cluster of real processes (ttl 6, loop_wait 1, retry_timeout 2 unless --timing).

``hang``: the primary's postmaster and backends SIGSTOPped (a storage stall). The agent kills
them after retry_timeout and restarts Postgres in place: time from the hang to the first write
it acknowledges again.
``hang-nostart``: the same, with a setting that fails every start: the key is released within
ttl of the hang and a replica takes over: time from the hang to another node's first write.
``pause-outage``: maintenance mode, etcd SIGSTOPped for 2 x ttl: time from etcd's return to
``/primary`` 200 on the paused primary (which takes its lost key back).

Each prints the median and the max. Before the fixes of this corner the answers were: hang, at
least primary_start_timeout (300 s); pause-outage, never while paused.

    PYTHONPATH=. .venv/bin/python bench/stuck.py [--runs 5] [--parts hang,hang-nostart,pause-outage] [--timing 6,1,2]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from pgha.testing import LocalCluster, Node, http_request, wait_for
from pgha.testing.cluster import thaw

BAD_SETTING = "shared_preload_libraries = 'pgha_bench_no_such_library'\n"


def writable(n: Node) -> bool:
    try:
        with psycopg.connect(n.dsn(), connect_timeout=1, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_stuck (at timestamptz)")
            conn.execute("INSERT INTO bench_stuck VALUES (now())")
            return True
    except Exception:  # noqa: BLE001 - down, hung or read-only
        return False


def until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check`` holds (polled every 50 ms)."""
    t0 = time.monotonic()
    wait_for(what, check, timeout, 0.05)
    return time.monotonic() - t0


def hang(c: LocalCluster, cannot_start: bool) -> float:
    leader = c.wait_healthy(120)
    auto = leader.data_dir / "postgresql.auto.conf"
    if cannot_start:
        auto.write_text(auto.read_text() + BAD_SETTING)
    pids = leader.freeze_postgres()
    try:
        if cannot_start:
            return until("another node writable", lambda: any(writable(n) for n in c.nodes if n is not leader),
                         c.dcs["ttl"] * 4)
        return until("the leader writable again", lambda: writable(leader), c.dcs["ttl"] * 4)
    finally:
        thaw(pids)
        if cannot_start:  # (pg_rewind copies the new primary's file back anyway)
            auto.write_text(auto.read_text().replace(BAD_SETTING, ""))


def pause_outage(c: LocalCluster) -> float:
    leader = c.wait_healthy(120)
    assert http_request("PATCH", leader.api + "/config", {"pause": True})[0] == 200
    wait_for("every agent paused", lambda: all((n.status() or {}).get("pause") for n in c.nodes), 10)
    etcd = c.etcd.members[0].proc
    assert etcd is not None
    etcd.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2 * c.dcs["ttl"])
    finally:
        etcd.send_signal(signal.SIGCONT)
    try:
        return until("the paused primary routed", lambda: leader.health("/primary") == 200, 30)
    finally:
        assert http_request("PATCH", leader.api + "/config", {"pause": False})[0] == 200


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--parts", default="hang,hang-nostart,pause-outage")
    ap.add_argument("--timing", default="6,1,2", help="ttl,loop_wait,retry_timeout")
    args = ap.parse_args()
    ttl, loop_wait, retry = (int(x) for x in args.timing.split(","))
    parts: dict[str, Callable[[LocalCluster], float]] = {
        "hang": lambda c: hang(c, False), "hang-nostart": lambda c: hang(c, True), "pause-outage": pause_outage}
    with tempfile.TemporaryDirectory(prefix="pgha-bench-") as base:
        c = LocalCluster(Path(base), dcs={"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry})
        try:
            c.start()
            for name in args.parts.split(","):
                times = [parts[name](c) for _ in range(args.runs)]
                print(f"{name:13} over {args.runs} runs: median {statistics.median(times):.1f} s, "
                      f"max {max(times):.1f} s  (ttl {ttl}, loop_wait {loop_wait}, retry_timeout {retry})", flush=True)
        finally:
            c.stop()


if __name__ == "__main__":
    main()
