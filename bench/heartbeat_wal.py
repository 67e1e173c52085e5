"""WAL written by the availability heartbeat: an idle one-node cluster's WAL growth over a window
with ``heartbeat_interval: 1`` and with the heartbeat off, side by side in one process. Not a
test: nothing here asserts a size.

    PYTHONPATH=. .venv/bin/python bench/heartbeat_wal.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pgha.testing import FAST, LocalCluster, http_request, wait_for
from tests.conftest import sql


def wal_growth(c: LocalCluster, seconds: float) -> int:
    leader = c.leader()
    start = int(sql(leader.dsn(), "SELECT (pg_current_wal_lsn() - '0/0')::bigint")[0][0])
    time.sleep(seconds)
    return int(sql(leader.dsn(), "SELECT (pg_current_wal_lsn() - '0/0')::bigint")[0][0]) - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-hb-"))
    c = LocalCluster(base, nodes=1, dcs={**FAST, "heartbeat_interval": 1})
    try:
        c.start()
        leader = c.leader()
        wait_for("the heartbeat table", lambda: sql(leader.dsn(), "SELECT to_regclass('pgha.heartbeat')")[0][0], 20)
        sql(leader.dsn(), "CHECKPOINT")
        on = wal_growth(c, args.seconds)
        assert http_request("PATCH", leader.api + "/config", {"heartbeat_interval": 0}, timeout=5)[0] == 200
        time.sleep(2)
        sql(leader.dsn(), "CHECKPOINT")
        off = wal_growth(c, args.seconds)
        per_beat = (on - off) / args.seconds
        print(f"WAL over {args.seconds:.0f} s: heartbeat on {on} B, off {off} B; "
              f"{per_beat:.0f} B per heartbeat, {per_beat * 86400 / 1e6:.1f} MB/day at 1 s")
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
