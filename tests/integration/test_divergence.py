"""The divergence ledger: after an asynchronous failover with writes the replicas never received,
the old primary records, before its rewind discards them, exactly the acknowledged writes that
were lost, and no table written only before the divergence; a restore of the WAL archive (real
pgBackRest) to its end holds every acknowledged write but exactly those."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, wait_for
from tests.backrest import STANZA, archived, cli, require, restored_rows, shared  # noqa: F401 - shared is a fixture
from tests.backrest import conf as backrest_conf
from tests.backrest import run as pgbackrest
from tests.conftest import sql

pytestmark = pytest.mark.slow


def test_divergence_ledger_counts_exactly_the_acknowledged_writes_an_async_failover_lost_and_the_archive_agrees(
        make_cluster: Callable[..., LocalCluster], shared: Path) -> None:
    require()
    conf = backrest_conf(shared)
    # no heartbeat: the old primary's only transactions are the lost writes
    c = make_cluster(dcs={**FAST, "heartbeat_interval": 0,
                          "archive": {"pgbackrest": {"stanza": STANZA, "config": str(conf)}, "max_delay": 60}})
    c.start()
    old = c.leader()
    wait_for("the stanza", lambda: "stanza main ready" in old.log_text(), 60)
    out = cli(old, "backup", "--type", "full", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    replicas = [n for n in c.nodes if n is not old]
    sql(old.dsn(), "CREATE TABLE before_only AS SELECT generate_series(1, 100) AS id")
    sql(old.dsn(), "CREATE TABLE feed (id int PRIMARY KEY)")
    wait_for("the tables on both replicas", lambda: all(
        sql(n.dsn(), "SELECT to_regclass('feed') IS NOT NULL")[0][0] for n in replicas), 30)

    # The replicas stop receiving (the walsenders are frozen); the primary goes on acknowledging.
    senders = [pid for (pid,) in sql(old.dsn(), "SELECT pid FROM pg_stat_replication")]
    for pid in senders:
        os.kill(pid, signal.SIGSTOP)
    acked = []
    with psycopg.connect(old.dsn(), autocommit=True) as conn:
        for i in range(1, 41):
            conn.execute("INSERT INTO feed VALUES (%s)", (i,))
            acked.append(i)
    old.signal_agent(signal.SIGKILL)
    os.killpg(old.postmaster_pid() or 0, signal.SIGKILL)
    for pid in senders:  # each backend leads its own process group: a stopped one would outlive the test
        os.kill(pid, signal.SIGKILL)
    new = wait_for("a new primary", lambda: next((n for n in replicas if n.health("/primary") == 200), None), 60)
    present = {r[0] for r in sql(new.dsn(), "SELECT id FROM feed")}
    lost = [i for i in acked if i not in present]
    assert lost, "the test meant to lose writes"

    # As in production, where an old primary comes back minutes later: the new timeline's history
    # is in the archive before it starts. Restored at its start, that history made Postgres replay
    # the old primary's lost writes past the fork (CI: the agent took it for a clean rejoin).
    wait_for("the new timeline's history archived", lambda: any(
        name.startswith("00000002.history") for name in archived(conf)), 60)
    pg_log = old.dir / "data.postgres.log"
    logged = len(pg_log.read_text(errors="replace"))
    old.start()
    wait_for(f"{old.name} back as a replica", lambda: old.health("/replica") == 200, 90)
    first_start = pg_log.read_text(errors="replace")[logged:].split("database system is shut down")[0]
    assert 'restored log file "00000002.history"' not in first_start, first_start[-3000:]
    assert "rewinding from" in old.log_text()

    def recorded() -> dict[str, Any] | None:
        out = subprocess.run([sys.executable, "-m", "pgha", "divergence", "-f", "json", "-c", str(new.config_path)],
                             capture_output=True, text=True, timeout=30, check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    report = wait_for("the divergence in the timeline", recorded, 30)
    assert report["node"] == old.name and report["leader"] == new.name
    assert report["transactions"] == len(lost), (report, lost)
    assert report["tables"] == {"postgres.feed": {"insert": len(lost), "update": 0, "delete": 0}}, report
    assert report["bytes"] > 0 and report["first_commit"] <= report["last_commit"]
    assert json.loads(Path(report["file"]).read_text())["transactions"] == len(lost)
    pretty = subprocess.run([sys.executable, "-m", "pgha", "divergence", "-c", str(new.config_path)],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"postgres.feed: {len(lost)} inserted" in pretty

    # The archive agrees: restored to its end, it holds what the new primary holds, which is
    # every acknowledged write but those the ledger counted.
    pgbackrest(conf, new, "check")
    restored = {r[0] for r in restored_rows(new, shared / "restored", "SELECT id FROM feed")}
    assert restored == present, (sorted(restored ^ present)[:10], lost)
    assert len(set(acked) - restored) == report["transactions"]


def test_old_primary_whose_rewind_needs_wal_the_new_primary_removed_is_cloned_again(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """pg_rewind copies only the WAL its source still has. When the new primary has already
    removed segments the rewound directory must replay (no slot held them: here slots are off
    and wal_keep_size is 0), that standby could never open; the agent clones it again instead
    of waiting on it for an hour."""
    c = make_cluster(nodes=2, dcs={**FAST, "heartbeat_interval": 0, "postgresql": {"use_slots": False}})
    for n in c.nodes:
        n.config["postgresql"]["parameters"]["wal_keep_size"] = "0"
    c.start()
    old = c.leader()
    (new,) = [n for n in c.nodes if n is not old]
    sql(old.dsn(), "CREATE TABLE feed (id int PRIMARY KEY)")
    wait_for("the table on the replica", lambda: sql(new.dsn(), "SELECT to_regclass('feed') IS NOT NULL")[0][0], 30)

    # Diverge: the replica stops receiving while the primary acknowledges a few more writes.
    sql(old.dsn(), "CHECKPOINT")  # the rewind's starting point: its own WAL still has it
    senders = [pid for (pid,) in sql(old.dsn(), "SELECT pid FROM pg_stat_replication")]
    for pid in senders:
        os.kill(pid, signal.SIGSTOP)
    sql(old.dsn(), "INSERT INTO feed SELECT generate_series(1, 10)")
    old.signal_agent(signal.SIGKILL)
    os.killpg(old.postmaster_pid() or 0, signal.SIGKILL)
    for pid in senders:  # a stopped walsender would hold the shared memory the rewind needs
        os.kill(pid, signal.SIGKILL)
    wait_for("the replica promoted", lambda: new.health("/primary") == 200, 60)

    # The new primary moves on and removes the segments from before its promotion.
    for _ in range(4):
        sql(new.dsn(), "INSERT INTO feed SELECT generate_series(100, 200) ON CONFLICT DO NOTHING")
        sql(new.dsn(), "SELECT pg_switch_wal()")
        sql(new.dsn(), "CHECKPOINT")

    old.start()
    wait_for(f"{old.name} back as a streaming replica", lambda: old.health("/replica") == 200, 90)
    log = old.log_text()
    assert "pg_rewind: Done!" in log or "no rewind required" in log, "the rejoin was meant to rewind first"
    assert "the rewound data directory cannot open" in log and "re-cloning from" in log
    assert sql(old.dsn(), "SELECT count(*) FROM feed WHERE id >= 100")[0][0] == 101


def test_replica_that_received_wal_past_the_fork_without_replaying_it_rejoins_without_that_wal(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """pg_rewind judges a standby by its replay point, not by the WAL it received: a replica that
    received the old primary's last writes but had not replayed them gets "no rewind required".
    Started as it is, it replayed those writes from its own pg_wal (rows the new primary never
    had, on a replica) and stopped streaming at the first record that did not link, until the
    stall rule rewound it again a ttl later. Its pg_wal is now cut at the fork: one rewind, and
    the rows never appear."""
    c = make_cluster(dcs={**FAST, "heartbeat_interval": 0}, tags={"n3": {"nofailover": True}})
    c.etcd.start()  # n1 alone first: the primary to lose; n3 the replica that may never take over
    old, new, held = c.nodes
    for n in c.nodes:
        n.config["etcd"]["hosts"] = c.etcd.hosts
    old.start()
    wait_for(f"{old.name} primary", lambda: old.health("/primary") == 200, 60)
    new.start()
    held.start()
    c.wait_healthy(90)
    sql(old.dsn(), "CREATE TABLE feed (id int PRIMARY KEY)")
    wait_for("the table on both replicas", lambda: all(
        sql(n.dsn(), "SELECT to_regclass('feed') IS NOT NULL")[0][0] for n in (new, held)), 30)

    # held receives everything from now on and replays nothing; new stops receiving.
    sql(held.dsn(), "SELECT pg_wal_replay_pause()")
    wait_for("replay paused", lambda: sql(held.dsn(), "SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused", 10)
    paused_at = sql(held.dsn(), "SELECT pg_last_wal_replay_lsn()")[0][0]
    wait_for(f"{new.name} at least where {held.name} stopped replaying", lambda: sql(
        new.dsn(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (paused_at,))[0][0], 10)
    (sender,) = [pid for (pid,) in sql(old.dsn(), "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                                       (new.name,))]
    os.kill(sender, signal.SIGSTOP)
    sql(old.dsn(), "INSERT INTO feed SELECT generate_series(1, 1000)")
    end = sql(old.dsn(), "SELECT pg_current_wal_lsn()")[0][0]
    wait_for(f"{held.name} received the writes {new.name} never will", lambda: sql(
        held.dsn(), "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (end,))[0][0], 10)
    old.signal_agent(signal.SIGKILL)
    os.killpg(old.postmaster_pid() or 0, signal.SIGKILL)
    os.kill(sender, signal.SIGKILL)

    wait_for(f"{new.name} promoted", lambda: new.health("/primary") == 200, 60)
    seen: set[int] = set()  # what the replica served meanwhile (before the fix: the 1000 rows, for 6 s)

    def rejoined() -> bool:
        with contextlib.suppress(psycopg.Error):
            seen.add(sql(held.dsn(), "SELECT count(*) FILTER (WHERE id > 0) FROM feed")[0][0])
        return held.health("/replica") == 200

    wait_for(f"{held.name} streaming from {new.name}", rejoined, 60, 0.1)
    sql(new.dsn(), "INSERT INTO feed VALUES (-1)")
    wait_for("the new primary's write on the replica", lambda: sql(
        held.dsn(), "SELECT count(*) FROM feed WHERE id = -1")[0][0] == 1, 30)
    assert sql(held.dsn(), "SELECT count(*) FROM feed")[0][0] == 1
    assert seen == {0}, f"the replica served rows the new primary never had: {sorted(seen)}"
    log = held.log_text()
    assert "no rewind required" in log and "pg_wal cut at the fork" in log, log[-3000:]
    assert log.count("with pg_rewind") == 1, "rewound again: the first rejoin replayed WAL past the fork"
