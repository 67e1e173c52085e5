"""Failover benchmark: time from a fault to the first acknowledged write on the (new) primary.

Starts a real 3-node cluster (etcd, Postgres 15, pgha agents on loopback) per timing profile,
writes continuously through a libpq multi-host connection (target_session_attrs=read-write, so the
client finds whichever node accepts writes), injects a fault, and reports every run and the
median. Faults: node death (agent and postmaster SIGKILL together) and postmaster crash (agent
alive). Not a test: nothing here asserts a time.

    .venv/bin/python bench/failover.py [--runs 3] [--profiles fast,default]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from pgha.testing import LocalCluster, Node, wait_for

PROFILES = {
    "fast": {"ttl": 5, "loop_wait": 1, "retry_timeout": 2},
    "default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
}


class Writer(threading.Thread):
    """Inserts one row at a time, reconnecting on any error; records each commit's time."""

    def __init__(self, nodes: list[Node]) -> None:
        super().__init__(daemon=True)
        hosts = ",".join("127.0.0.1" for _ in nodes)
        ports = ",".join(str(n.pg_port) for n in nodes)
        self.dsn = (f"host={hosts} port={ports} user=postgres password=supersecret dbname=postgres "
                    f"target_session_attrs=read-write connect_timeout=1")
        self.acks: list[tuple[float, int]] = []  # (monotonic time of the commit, server port)
        self.errors: list[float] = []  # when a write or a connection failed
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                    conn.execute("SET statement_timeout = '1s'")
                    conn.execute("CREATE TABLE IF NOT EXISTS bench (id bigserial, t timestamptz default now())")
                row = conn.execute("INSERT INTO bench DEFAULT VALUES RETURNING inet_server_port()").fetchone()
                assert row is not None
                self.acks.append((time.monotonic(), int(row[0])))
            except psycopg.Error:
                self.errors.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
            time.sleep(0.005)

    def first_ack_after(self, t: float, timeout: float, exclude_port: int | None) -> float:
        """The first commit after the client first saw the fault (a commit in flight when the
        fault hit does not count as recovery); with ``exclude_port``, on another server."""
        seen = wait_for("the client to see the fault", lambda: next((e for e in self.errors if e > t), None), 10, 0.005)
        return wait_for("a write after the fault", lambda: next(
            (at for at, port in self.acks if at > seen and port != exclude_port), None), timeout, 0.01)


def one_fault(c: LocalCluster, writer: Writer, fault: str, ttl: int) -> float:
    primary = c.leader()
    time.sleep(1.0)  # steady writes before the fault
    t0 = time.monotonic()
    if fault == "node_death":
        primary.signal_agent(signal.SIGKILL)
        primary.kill_postgres(signal.SIGKILL)
    else:
        primary.kill_postgres(signal.SIGKILL)
    took = writer.first_ack_after(t0, ttl * 3 + 30, primary.pg_port if fault == "node_death" else None) - t0
    if fault == "node_death":
        primary.start()
    c.wait_healthy(120)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profiles", default="fast,default")
    ap.add_argument("--faults", default="postmaster_crash,node_death")
    args = ap.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    for profile in args.profiles.split(","):
        dcs = PROFILES[profile]
        base = Path(tempfile.mkdtemp(prefix="pgha-bench-"))
        c = LocalCluster(base, dcs=dcs)
        writer = Writer(c.nodes)
        try:
            c.start()
            writer.start()
            for fault in args.faults.split(","):
                for i in range(args.runs):
                    took = one_fault(c, writer, fault, int(dcs["ttl"]))
                    results.setdefault((profile, fault), []).append(took)
                    print(f"{profile:8} {fault:17} run {i + 1}: {took:6.2f} s", flush=True)
        finally:
            writer.stop.set()
            c.stop()
            shutil.rmtree(base, ignore_errors=True)
    print("\nfault -> first acknowledged write (median of runs)")
    for (profile, fault), times in results.items():
        dcs = PROFILES[profile]
        print(f"  {profile} (ttl {dcs['ttl']}, loop_wait {dcs['loop_wait']}, retry_timeout {dcs['retry_timeout']}) "
              f"{fault}: median {statistics.median(times):.2f} s, runs {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
