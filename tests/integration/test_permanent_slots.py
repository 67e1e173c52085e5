"""Permanent slots survive a failover. Physical: pg_receivewal streams through it from the
primary, the replicas keep copies advanced to its position, and after the primary dies the
consumer resumes from the new primary with no WAL missing; ignore_slots keeps a foreign slot that
an unlisted one would lose. Logical: pg_recvlogical decodes (test_decoding) under writes, the
replicas copy the slot and advance it, and after the primary is killed the consumer resumes on the
new primary with every committed transaction."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for
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
    # No further on than the consumer had confirmed, to the WAL segment: under load the new primary's
    # copy was seen 40 bytes past the position read on the old primary once the consumer stopped
    # (at a segment boundary; not yet explained). WAL is kept by the segment, and the consumer
    # resuming with no segment missing is checked below.
    assert kept is not None and 0 < kept and kept >> 24 <= confirmed >> 24, (kept, confirmed)
    sql(new.dsn(), "INSERT INTO churn SELECT generate_series(1, 1000)")
    end = sql(new.dsn(), "SELECT pg_current_wal_lsn()::text")[0][0]
    resumed = receivewal(new, wal, f"--endpos={end}")
    out = resumed.communicate(timeout=60)[0].decode(errors="replace")
    assert resumed.returncode == 0, out
    assert "has already been removed" not in out


def logical_position(node: Node, name: str) -> int | None:
    try:
        rows = sql(node.dsn(), "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots "
                               "WHERE slot_name = %s AND slot_type = 'logical'", (name,))
    except Exception:  # noqa: BLE001 - restarting
        return None
    return int(rows[0][0] or 0) if rows else None


def recvlogical(node: Node, into: Path) -> subprocess.Popen[bytes]:
    """A logical consumer of the slot ``cdc`` that confirms what it wrote to ``into`` every second."""
    return subprocess.Popen([f"{BIN}/pg_recvlogical", "-d", "postgres", "-S", "cdc", "--start", "-f", str(into),
                             "-F", "1", "-s", "1", "--no-loop", "-h", "127.0.0.1", "-p", str(node.pg_port),
                             "-U", "postgres", "--no-password"],
                            env={**os.environ, "PGPASSWORD": "supersecret"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def decoded_ids(path: Path) -> list[int]:
    """The ids of the rows inserted into ``feed``, in the order the consumer received them."""
    text = path.read_text() if path.exists() else ""
    return [int(m) for m in re.findall(r"table public\.feed: INSERT: id\[integer\]:(\d+)", text)]


class Writer(threading.Thread):
    """Inserts 1, 2, 3... into ``feed`` on whichever node is primary; keeps the acknowledged ids."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.stop, self.acked, self.next = cluster, threading.Event(), list[int](), 1

    def run(self) -> None:
        while not self.stop.is_set():
            primary = next(iter(self.cluster.primaries()), None)
            if primary is None:
                time.sleep(0.1)
                continue
            try:
                with psycopg.connect(primary.dsn(), autocommit=True) as conn:
                    while not self.stop.is_set():
                        conn.execute("INSERT INTO feed VALUES (%s)", (self.next,))
                        self.acked.append(self.next)
                        self.next += 1
                        time.sleep(0.005)
            except psycopg.Error:
                self.next += 1  # its outcome is unknown: never reuse the id
                time.sleep(0.1)


def test_permanent_logical_slot_survives_failover_and_its_consumer_misses_no_committed_transaction(
        make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    c = make_cluster(dcs={**FAST, "slots": {"cdc": {"type": "logical", "database": "postgres",
                                                    "plugin": "test_decoding"}}})
    c.start()
    leader = c.leader()
    replicas = [n for n in c.nodes if n is not leader]
    sql(leader.dsn(), "CREATE TABLE feed (id int PRIMARY KEY)")
    created = wait_for("the logical slot on the leader", lambda: logical_position(leader, "cdc"), 30)
    assert sql(replicas[0].dsn(), "SHOW hot_standby_feedback")[0][0] == "on"

    writer = Writer(c)
    writer.start()
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    consumer = recvlogical(leader, before)
    wait_for("changes decoded on the primary", lambda: len(decoded_ids(before)) > 300, 30)

    def copied() -> bool:
        # The slot may need WAL from before the replicas were cloned: they copy it once its
        # consumer moved it on, which a checkpoint (a running-transactions record) lets happen.
        sql(leader.dsn(), "CHECKPOINT")
        return all(logical_position(n, "cdc") is not None for n in replicas)

    wait_for("copies of the slot on both replicas", copied, 60, interval=1.0)
    confirmed = wait_for("the consumer's confirmed position on the primary", lambda: (
        p if (p := logical_position(leader, "cdc") or 0) > created else None), 30)
    wait_for("the replicas' copies advanced to it", lambda: all(
        (logical_position(n, "cdc") or 0) >= confirmed for n in replicas), 30)

    leader.signal_agent(signal.SIGKILL)
    leader.kill_postgres(signal.SIGKILL)
    consumer.wait(10)
    new = wait_for("a new primary", lambda: next((n for n in replicas if n.health("/primary") == 200), None), 60)
    resumed = recvlogical(new, after)
    acked_at_failover = len(writer.acked)
    wait_for("writes on the new primary", lambda: len(writer.acked) > acked_at_failover + 300, 60)
    writer.stop.set()
    writer.join(10)
    committed = {r[0] for r in sql(new.dsn(), "SELECT id FROM feed")}
    wait_for("the consumer caught up on the new primary", lambda: max(committed) in decoded_ids(after), 30)
    resumed.send_signal(signal.SIGINT)
    resumed.wait(10)

    first, second = decoded_ids(before), decoded_ids(after)
    missing = sorted(committed - set(first) - set(second))
    assert not missing, f"{len(missing)} committed transactions never reached the consumer: {missing[:20]}"
    assert set(second) <= committed, "the consumer received rows the new primary does not have"
    # It resumed where it had confirmed (a few rows again at most), not from the slot's creation.
    assert second and second[0] > first[0] and second[0] <= max(first) + 1, (first[:3], second[:3])


def test_a_stopped_replicas_slot_is_kept_for_member_slots_ttl_then_dropped(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(dcs={**FAST, "member_slots_ttl": "12s"})
    c.start()
    leader = c.leader()
    gone = next(n for n in c.nodes if n is not leader)
    wait_for("the replica's slot on the leader", lambda: slot_lsn(leader, gone.name) is not None, 20)
    gone.stop()
    wait_for("its member record gone", lambda: gone.name not in {
        m["name"] for m in (http_request("GET", leader.api + "/cluster", timeout=2)[1] or {}).get("members", [])}, 20)
    time.sleep(4)
    assert slot_lsn(leader, gone.name) is not None, "the slot of a replica that just stopped was dropped at once"
    gone.start()  # back within member_slots_ttl: it streams through its slot, no WAL missing
    wait_for("the replica streaming again", lambda: gone.health("/replica") == 200, 60)
    assert sql(leader.dsn(), "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (gone.name,)) == [(True,)]
    time.sleep(2 * FAST["loop_wait"])  # a leader loop records it as back (else it counts as gone since the first stop)

    gone.stop()
    t0 = time.monotonic()
    wait_for("the slot dropped once member_slots_ttl passed", lambda: slot_lsn(leader, gone.name) is None, 40)
    assert time.monotonic() - t0 >= 10, "dropped before member_slots_ttl"
