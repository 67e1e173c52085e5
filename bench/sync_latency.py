"""Commit latency cost of synchronous mode: pgbench on loopback against the same 3-node cluster,
first asynchronous, then with synchronous_mode on (the leader picks the standby), same run.
Not a test.

    .venv/bin/python bench/sync_latency.py [--seconds 15] [--clients 4]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pgha.testing import LocalCluster, Node, http_request, wait_for

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def pgbench(node: Node, seconds: int, clients: int) -> tuple[float, float]:
    env = {"PGPASSWORD": "supersecret", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(node.pg_port), "-U", "postgres", "-c", str(clients),
                          "-j", "2", "-T", str(seconds), "-N", "postgres"], capture_output=True, text=True, env=env,
                         check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return tps, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-sync-"))
    c = LocalCluster(base)
    for n in c.nodes:  # commit durability matters here: measure with fsync on
        n.config["postgresql"]["parameters"]["fsync"] = "on"
    try:
        c.start()
        leader = c.leader()
        env = {"PGPASSWORD": "supersecret", "PATH": "/usr/bin:/bin"}
        subprocess.run([PGBENCH, "-i", "-s", "5", "-h", "127.0.0.1", "-p", str(leader.pg_port), "-U", "postgres",
                        "postgres"], capture_output=True, env=env, check=True)
        a_tps, a_lat = pgbench(leader, args.seconds, args.clients)
        http_request("PATCH", leader.api + "/config", {"synchronous_mode": True})
        wait_for("a synchronous standby", lambda: (leader.status() or {}).get("synchronous_standbys"), 20)
        s_tps, s_lat = pgbench(leader, args.seconds, args.clients)
        print(f"""
pgbench -N, {args.clients} clients, {args.seconds} s each, fsync on, 3 nodes on loopback
  asynchronous:          {a_tps:8.0f} tps, {a_lat:6.2f} ms average latency
  synchronous_mode on:   {s_tps:8.0f} tps, {s_lat:6.2f} ms average latency
  cost of synchronous:   latency x{s_lat / a_lat:.2f}, throughput x{s_tps / a_tps:.2f}""")
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
