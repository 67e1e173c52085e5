"""Continuous WAL archiving with the real pgBackRest (Debian's 2.45), a repository on the local
filesystem: the ``archive`` section archives on the primary, the archive follows a switchover
(the new timeline's history file reaches the repository), and a broken archive_command is seen:
``/archive`` turns 503, the failure counters rise, ``pgha list`` flags the primary, and after
the fix the backlog drains with no gap (``pgbackrest check``)."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pgha.testing import LocalCluster, wait_for
from tests.backrest import STANZA, archived, cli, get, shared  # noqa: F401 - shared is a fixture
from tests.backrest import conf as pgbackrest_conf
from tests.backrest import require, restored_rows
from tests.backrest import run as pgbackrest
from tests.conftest import sql

pytestmark = pytest.mark.slow


def chmod_dirs(root: Path, mode: int) -> None:
    for d, _, _ in os.walk(root):
        os.chmod(d, mode)


def test_archive_follows_a_switchover_and_a_broken_command_pages_until_fixed(
        make_cluster: Callable[..., LocalCluster], shared: Path) -> None:
    require()
    backrest = shared
    conf = pgbackrest_conf(backrest)
    c = make_cluster(dcs={"ttl": 10, "loop_wait": 1, "retry_timeout": 3,
                          "archive": {"pgbackrest": {"stanza": STANZA, "config": str(conf)}, "max_delay": 3}})
    c.start(wait=False)
    old = c.leader(90)
    assert sql(old.dsn(), "SHOW archive_mode")[0][0] == "on"
    # the primary creates the stanza itself: no operator step before archiving works
    wait_for("the stanza created by the primary's agent", lambda: "stanza main ready" in old.log_text(), 60)
    c.wait_healthy(90)
    pgbackrest(conf, old, "check")  # switches a segment and waits for it in the repository
    # /archive reports the loop's last look at pg_stat_archiver, up to loop_wait old
    def archived_once() -> dict | None:
        status, body = get(old, "/archive")
        return body if status == 200 and body["archive"]["archived_count"] >= 1 else None
    body = wait_for("/archive 200 with the checked segment counted", archived_once, 15)
    assert body["problem"] is None
    assert get(old, "/patroni")[1]["archive"]["failing"] is False
    replica = next(n for n in c.nodes if n is not old)
    assert get(replica, "/archive")[0] == 200  # only the primary archives

    # A switchover: the new primary archives the new timeline's history file.
    sql(old.dsn(), "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    out = cli(old, "switchover", "--candidate", replica.name, "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    new = wait_for("the candidate as primary", lambda: replica if c.leader() is replica else None, 30)
    tl = int(sql(new.dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[0][0])
    wait_for("the new timeline's history file in the repository",
             lambda: f"{tl:08X}.history" in archived(conf), 30)
    pgbackrest(conf, new, "check")

    # Break archiving: the repository read-only for the Postgres user.
    repo = backrest / "repo"
    chmod_dirs(repo, 0o555)
    try:
        sql(new.dsn(), "INSERT INTO t VALUES (2)")
        sql(new.dsn(), "SELECT pg_switch_wal()")
        wait_for("/archive 503 on the primary", lambda: get(new, "/archive")[0] == 503, 60)
        status = get(new, "/patroni")[1]["archive"]
        assert status["failed_count"] >= 1 and status["backlog"] >= 1 and status["failing"]
        metrics = urllib.request.urlopen(new.api + "/metrics", timeout=3).read().decode()
        assert "pgha_archive_failed_total" in metrics or "pgha_archive_failed " in metrics
        assert "pgha_archive_backlog" in metrics
        wait_for("pgha list flags the primary", lambda: "failing" in cli(new, "list").stdout, 30)
    finally:
        chmod_dirs(repo, 0o750)
    # The archiver retries a minute after its third failure, or at once when a segment completes.
    sql(new.dsn(), "INSERT INTO t VALUES (3)")
    sql(new.dsn(), "SELECT pg_switch_wal()")
    wait_for("/archive 200 again, the backlog drained", lambda: get(new, "/archive")[0] == 200
             and get(new, "/patroni")[1]["archive"]["backlog"] == 0, 90)
    pgbackrest(conf, new, "check")
    info = json.loads(pgbackrest(conf, new, "info", "--output=json"))
    # No backup taken here (code 2: "no valid backups"); the archive spans both timelines.
    assert info[0]["status"]["code"] in (0, 2), info
    assert info[0]["archive"][0]["max"].startswith(f"{tl:08X}"), info


def test_segments_a_killed_primary_never_archived_are_pushed_by_the_new_primary(
        make_cluster: Callable[..., LocalCluster], shared: Path) -> None:
    require()
    conf = pgbackrest_conf(shared)
    c = make_cluster(dcs={"ttl": 8, "loop_wait": 1, "retry_timeout": 3,
                          "archive": {"pgbackrest": {"stanza": STANZA, "config": str(conf)}, "max_delay": 60}})
    c.start(wait=False)
    old = c.leader(90)
    wait_for("the stanza", lambda: "stanza main ready" in old.log_text(), 60)
    c.wait_healthy(90)
    out = cli(old, "backup", "--type", "full", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    sql(old.dsn(), "CREATE TABLE t (v int)")

    # The old primary's archiver stops; three segments complete, reach both replicas, and are
    # never pushed before the primary dies.
    archiver = sql(old.dsn(), "SELECT pid FROM pg_stat_activity WHERE backend_type = 'archiver'")[0][0]
    os.kill(archiver, signal.SIGSTOP)
    stranded = []
    for i in range(3):
        sql(old.dsn(), f"INSERT INTO t SELECT generate_series({i * 1000}, {i * 1000 + 999})")
        stranded.append(sql(old.dsn(), "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
        sql(old.dsn(), "SELECT pg_switch_wal()")
    sql(old.dsn(), "INSERT INTO t VALUES (-1)")
    end = sql(old.dsn(), "SELECT pg_current_wal_lsn()")[0][0]
    wait_for("both replicas replayed everything", lambda: sql(
        old.dsn(), "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= %s", (end,))[0][0] == 2, 30)
    assert not any(name.startswith(s) for s in stranded for name in archived(conf))
    old.signal_agent(signal.SIGKILL)
    old.kill_postgres(signal.SIGKILL, tree=True)

    new = wait_for("a new primary", lambda: next((n for n in c.nodes if n is not old and n.health("/primary") == 200),
                                                  None), 60)
    wait_for("the stranded segments in the repository",
             lambda: all(any(name.startswith(s) for name in archived(conf)) for s in stranded), 60)
    assert "the old primary never archived" in new.log_text()
    pgbackrest(conf, new, "check")
    assert restored_rows(new, shared / "restored", "SELECT count(*) FROM t")[0][0] == 3001
