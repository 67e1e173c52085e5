"""Switchover benchmark: write unavailability through HAProxy (checks every 500 ms) during a
planned switchover, and acknowledged writes lost. Not a test: nothing here asserts a time.

A client writes continuously through HAProxy's write port (reconnecting on any error); each run
switches over to the other replica in turn. The window is the time between the last acknowledged
write before the switchover and the first one after it.

    .venv/bin/python bench/switchover.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from pgha.testing import HAProxy, LocalCluster, wait_for
from tests.conftest import sql

PATRONI_MEDIAN_S = 3.1


class Writer(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.dsn = f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres connect_timeout=2"
        self.acks: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn, i = None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                    conn.execute("SET statement_timeout = '2s'")
                i += 1
                conn.execute("INSERT INTO sw VALUES (%s)", (i,))
                self.acks.append((i, time.monotonic()))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
            time.sleep(0.002)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-sw-"))
    c = LocalCluster(base, dcs={"ttl": 10, "loop_wait": 1, "retry_timeout": 2})
    proxy = HAProxy(base, c.nodes)
    windows, lost_total = [], 0
    try:
        c.start()
        proxy.start()
        sql(c.leader().dsn(), "CREATE TABLE sw (id int PRIMARY KEY)")
        writer = Writer(proxy.write_port)
        writer.start()
        for run in range(args.runs):
            c.wait_healthy(60)
            wait_for("old primary rejoined", lambda: all(n.health("/health") == 200 for n in c.nodes), 60)
            time.sleep(2.0)
            leader = c.leader()
            t_start = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "pgha", "switchover", "--force", "-c", str(c.nodes[0].config_path)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stdout + out.stderr)
                continue
            wait_for("writes after the switchover", lambda: any(t > t_start and i > 0 for i, t in writer.acks[-5:]) and
                     c.leader().name != leader.name, 30)
            time.sleep(1.5)
            before = [t for _, t in writer.acks if t <= t_start]
            gaps = [b - a for (_, a), (_, b) in zip(writer.acks, writer.acks[1:]) if b > t_start - 0.5]
            window = max(gaps) if gaps else float("nan")
            windows.append(window)
            print(f"run {run + 1}: {leader.name} -> {c.leader().name}: write unavailability {window:.3f} s "
                  f"({len(before)} writes before)", flush=True)
        writer.stop.set()
        writer.join(10)
        present = {r[0] for r in sql(c.leader().dsn(), "SELECT id FROM sw")}
        lost_total = sum(1 for i, _ in writer.acks if i not in present)
        med = statistics.median(windows)
        print(f"""
switchover through HAProxy (inter 500ms, fall 2, rise 1), {len(windows)} runs
  write unavailability: median {med:.3f} s, runs {', '.join(f'{w:.3f}' for w in windows)}
  Patroni 4.1.5 reference: {PATRONI_MEDIAN_S} s median (ratio {PATRONI_MEDIAN_S / med:.1f}x)
  acknowledged writes lost: {lost_total} of {len(writer.acks)}""")
    finally:
        proxy.stop()
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
