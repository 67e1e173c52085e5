"""A permanent physical slot survives a failover: pg_receivewal streams through it from the
primary, the replicas keep copies advanced to its position, and after the primary dies the
consumer resumes from the new primary with no WAL missing. ignore_slots keeps a foreign slot that
an unlisted one would lose."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pgha.testing import FAST, LocalCluster, Node, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow

BIN = "/usr/lib/postgresql/15/bin"


def slot_lsn(node: Node, name: str) -> int | None:
    try:
        rows = sql(node.dsn(), "SELECT (restart_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = %s",
                   (name,))
    except Exception:  # noqa: BLE001 - restarting
        return None
    return int(rows[0][0] or 0) if rows else None


def receivewal(node: Node, into: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([f"{BIN}/pg_receivewal", "-D", str(into), "-S", "archiver", "-h", "127.0.0.1",
                             "-p", str(node.pg_port), "-U", "replicator", "--no-loop", "--no-password", *extra],
                            env={**os.environ, "PGPASSWORD": "replsecret"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_permanent_slot_survives_failover_and_its_consumer_resumes_without_a_gap(
        make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    c = make_cluster(dcs={**FAST, "slots": {"archiver": {"type": "physical"}},
                          "ignore_slots": [{"name": "external_keep"}]})
    c.start()
    leader = c.leader()
    for name in ("external_keep", "stray"):
        sql(leader.dsn(), "SELECT pg_create_physical_replication_slot(%s)", (name,))
    wait_for("the unlisted slot dropped", lambda: slot_lsn(leader, "stray") is None, 20)
    assert slot_lsn(leader, "external_keep") is not None
    wait_for("the permanent slot on the leader", lambda: slot_lsn(leader, "archiver") is not None, 20)

    wal = tmp_path / "wal"
    wal.mkdir()
    consumer = receivewal(leader, wal)
    sql(leader.dsn(), "CREATE TABLE churn (k int)")
    for _ in range(3):
        sql(leader.dsn(), "INSERT INTO churn SELECT generate_series(1, 10000)")
        sql(leader.dsn(), "SELECT pg_switch_wal()")
    wait_for("the consumer's position confirmed", lambda: (slot_lsn(leader, "archiver") or 0) >= 3 << 24, 30)
    consumer.send_signal(signal.SIGINT)
    consumer.wait(10)
    confirmed = slot_lsn(leader, "archiver") or 0
    replicas = [n for n in c.nodes if n is not leader]
    wait_for("copies on both replicas at the consumer's position", lambda: all(
        (slot_lsn(n, "archiver") or 0) >= confirmed for n in replicas), 30)

    leader.stop()
    new = wait_for("a new primary", lambda: next((n for n in replicas if n.health("/primary") == 200), None), 60)
    kept = slot_lsn(new, "archiver")
    assert kept is not None and 0 < kept <= confirmed, (kept, confirmed)
    sql(new.dsn(), "INSERT INTO churn SELECT generate_series(1, 1000)")
    end = sql(new.dsn(), "SELECT pg_current_wal_lsn()::text")[0][0]
    resumed = receivewal(new, wal, f"--endpos={end}")
    out = resumed.communicate(timeout=60)[0].decode(errors="replace")
    assert resumed.returncode == 0, out
    assert "has already been removed" not in out
