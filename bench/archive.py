"""The archive across many role changes, with the real pgBackRest. Not a test: nothing here
asserts a time.

A 3-node cluster in synchronous mode with ``archive.pgbackrest``, a full backup taken by the
cluster on a replica, then ``--failovers`` role changes (switchover and SIGKILL failover in turn)
under a steady writer. Reported (median and max):

- promotion (Postgres's "selected new timeline ID" log line) -> the new timeline's history file in
  the repository; and from the role change being asked for (switchover) or the SIGKILL;
- archive lag under the write load: a segment switched on the primary -> in the repository;
- a replica rebuilt by ``pgha reinit`` from the repository (``create_replica_methods:
  [pgbackrest, basebackup]``) against ``pg_basebackup`` from the primary: seconds, and the bytes a
  base backup streamed from the primary (from the repository: none; the primary serves only WAL);
- at the end, a restore to the archive's end: every acknowledged row present.

    PYTHONPATH=. .venv/bin/python bench/archive.py [--failovers 10]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from pgha.testing import LocalCluster, Node, wait_for
from tests.backrest import STANZA, archived, cli, conf
from tests.conftest import sql
from tests.integration.test_pitr import Writer, rows, stop_copy, timeline


def _promoted_at(node: Node, tl: int) -> float:
    """When Postgres chose timeline ``tl`` on ``node`` (its log line's time, in GMT)."""
    def line() -> str | None:
        text = (node.dir / "data.postgres.log").read_text(errors="replace")
        return next((ln for ln in text.splitlines() if f"selected new timeline ID: {tl}" in ln), None)
    stamp = wait_for(f"timeline {tl} in {node.name}'s Postgres log", line, 30)
    day, clock = stamp.split()[:2]
    return datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()


def _history_in_repo(path: Path, node: Node, tl: int, since: float) -> tuple[float, float]:
    """(promotion -> history file in the repository, role change asked -> the same)."""
    wait_for(f"timeline {tl}'s history file in the repository", lambda: f"{tl:08X}.history" in archived(path), 60,
             interval=0.02)
    now = time.time()
    return now - _promoted_at(node, tl), now - since


def _archive_lag(path: Path, leader: Node) -> float:
    seg = str(sql(leader.dsn(), "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
    t0 = time.time()
    sql(leader.dsn(), "SELECT pg_switch_wal()")
    wait_for(f"{seg} in the repository", lambda: any(n.startswith(seg) for n in archived(path)), 60, interval=0.02)
    return time.time() - t0


class BaseBackupBytes(threading.Thread):
    """The most a base backup streamed from ``primary`` (pg_stat_progress_basebackup), polled."""

    def __init__(self, primary: Node) -> None:
        super().__init__(daemon=True)
        self.primary, self.most, self.stop = primary, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                row = sql(self.primary.dsn(), "SELECT coalesce(max(backup_streamed), 0) FROM pg_stat_progress_basebackup")
                self.most = max(self.most, int(row[0][0]))
            except Exception:  # noqa: BLE001 - a missed poll only lowers the estimate
                pass
            time.sleep(0.02)


def _rebuild(c: LocalCluster, node: Node, methods: list[str]) -> tuple[float, str, int]:
    """Seconds to a streaming replica again, the method used, bytes a base backup read from the primary."""
    node.config["postgresql"]["create_replica_methods"] = methods
    node.signal_agent(signal.SIGTERM)
    node.wait_agent_exit(60)
    node.start()
    wait_for("the node streams", lambda: (node.status() or {}).get("replication_state") == "streaming", 120)
    poll = BaseBackupBytes(c.leader())
    poll.start()
    t0 = time.time()
    out = cli(node, "reinit", node.name, "--force", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for("the rebuilt node streams", lambda: (node.status() or {}).get("replication_state") == "streaming", 300)
    took = time.time() - t0
    poll.stop.set()
    poll.join(5)
    used = "pgbackrest" if "with method pgbackrest" in node.log_text().split("reinitializing")[-1] else "basebackup"
    return took, used, poll.most


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--failovers", type=int, default=10)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-archive-"))
    base.chmod(0o755)
    path = conf(base / "backrest")
    c = LocalCluster(base / "c", dcs={"ttl": 8, "loop_wait": 1, "retry_timeout": 3, "synchronous_mode": "on",
                                      "archive": {"pgbackrest": {"stanza": STANZA, "config": str(path)}}})
    history, asked, lags, writer = [], [], [], Writer(c.nodes)
    try:
        c.start()
        leader = c.leader()
        sql(leader.dsn(), "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        out = cli(leader, "backup", timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        writer.start()
        for i in range(args.failovers):
            old = c.leader(60)
            lags.append(_archive_lag(path, old))
            t0 = time.time()
            if i % 2 == 0:
                assert cli(old, "switchover", "--force").returncode == 0
            else:
                old.signal_agent(signal.SIGKILL)
                old.kill_postgres(signal.SIGKILL, tree=True)
            new = wait_for("a new leader", lambda: next((n for n in c.primaries() if n is not old), None), 90)
            from_promotion, from_request = _history_in_repo(path, new, timeline(new), t0)
            history.append(from_promotion)
            asked.append(from_request)
            if i % 2 == 1:
                old.start()
            c.wait_healthy(120)
        writer.stop.set()
        writer.join(10)
        leader = c.leader()
        replica = next(n for n in c.nodes if n is not leader)
        from_repo = _rebuild(c, replica, ["pgbackrest", "basebackup"])
        from_primary = _rebuild(c, replica, ["basebackup"])
        into = base / "restored"
        out = cli(leader, "restore", "--into", str(into), "--port", "25390", "--keep-running", "--json", timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        try:
            missing = {w.id for w in writer.acked} - rows(25390)
        finally:
            stop_copy(into)
        report = {"failovers": args.failovers, "promotion_to_history_in_repo_s": _stats(history),
                  "role_change_asked_to_history_in_repo_s": _stats(asked), "archive_lag_s": _stats(lags),
                  "replica_from_repository_s": round(from_repo[0], 2), "method": from_repo[1],
                  "replica_from_primary_s": round(from_primary[0], 2),
                  "base_backup_bytes_read_from_primary": {"repository": from_repo[2], "pg_basebackup": from_primary[2]},
                  "acked_rows": len(writer.acked),
                  "acked_rows_missing_after_restore": len(missing), "restore": json.loads(out.stdout)}
        print(json.dumps(report, indent=1))
    finally:
        writer.stop.set()
        c.stop()


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 3), "max": round(max(xs), 3)} if xs else {}


if __name__ == "__main__":
    main()
