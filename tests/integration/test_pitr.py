"""Backups that survive failovers, proven with the real pgBackRest: a full backup taken by the
cluster on a replica, a writer committing unique rows through a switchover, a SIGKILL failover
and another switchover (synchronous mode: nothing acknowledged may be lost), then point-in-time
restores into fresh directories at targets across every timeline. Each restore holds every row
acknowledged before its target and none sent after it; the archive is whole; a replica rebuilt
from the repository streams without a base backup from the primary."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from pgha.testing import LocalCluster, Node, wait_for
from tests.backrest import STANZA, archived, cli, get, require, shared  # noqa: F401 - shared is a fixture
from tests.backrest import conf as backrest_conf
from tests.backrest import run as pgbackrest
from tests.conftest import sql

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Write:
    id: int
    sent: float
    acked: float


class Writer(threading.Thread):
    """Commits one row at a time to whichever node is writable; remembers what was acknowledged."""

    def __init__(self, nodes: list[Node]) -> None:
        super().__init__(daemon=True)
        self.nodes, self.next_id = nodes, 1
        self.acked: list[Write] = []
        self.stop = threading.Event()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]] | None:
        for n in self.nodes:
            try:
                conn = psycopg.connect(n.dsn(), autocommit=True, connect_timeout=1)
            except psycopg.Error:
                continue
            try:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            except psycopg.Error:  # the node went down between connect and query: the writer must outlive it
                row = None
            if row is not None and not row[0]:
                return conn
            conn.close()
        return None

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = self._connect()
                if conn is None:
                    time.sleep(0.2)
                    continue
            i, sent = self.next_id, time.time()
            self.next_id += 1
            try:
                conn.execute("INSERT INTO w VALUES (%s)", (i,))
                self.acked.append(Write(i, sent, time.time()))
            except psycopg.Error:
                conn.close()
                conn = None
            time.sleep(0.02)
        if conn is not None:
            conn.close()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def restore(node: Node, into: Path, port: int, target: float | None) -> dict[str, object]:
    args = ["restore", "--into", str(into), "--port", str(port), "--keep-running", "--json"]
    out = cli(node, *args, *(["--to", iso(target)] if target is not None else []), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


def rows(port: int) -> set[int]:
    dsn = f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres connect_timeout=3"
    return {r[0] for r in sql(dsn, "SELECT id FROM w")}


def stop_copy(into: Path) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(into), "-m",
                    "immediate", "-w", "stop"], capture_output=True, timeout=60)


def timeline(node: Node) -> int:
    sql(node.dsn(), "CHECKPOINT")
    return int(sql(node.dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[0][0])


def test_restores_across_switchovers_and_a_failover_hold_every_acknowledged_write(
        make_cluster: Callable[..., LocalCluster], shared: Path) -> None:
    require()
    conf = backrest_conf(shared / "backrest")
    c = make_cluster(dcs={"ttl": 8, "loop_wait": 1, "retry_timeout": 3, "synchronous_mode": "on",
                          "archive": {"pgbackrest": {"stanza": STANZA, "config": str(conf)}, "max_delay": 60}})
    for n in c.nodes:  # the repository first; before the first backup exists, pg_basebackup
        n.config["postgresql"]["create_replica_methods"] = ["pgbackrest", "basebackup"]
    c.start(wait=False)
    first = c.leader(90)
    c.wait_healthy(90)
    sql(first.dsn(), "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")

    # The cluster takes the backup: on a replica (standby mode), stanza created on the way.
    out = cli(first, "backup", "--type", "full", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    status, b = get(first, "/backup")
    assert status == 200 and b["state"] == "done" and b["label"].endswith("F") and b["member"] != first.name, b
    assert b["standby"] is True
    # /backup reads etcd; /history serves the view of the agent's last loop, a loop_wait later.
    recorded = lambda: any(ev["kind"] == "backup" and ev["detail"]["label"] == b["label"]  # noqa: E731
                           for ev in get(first, "/history?events=1")[1])
    wait_for("the backup in the event history", recorded, 10)
    backed_up = time.time()
    refused = cli(first, "backup", "--type", "weekly")
    assert refused.returncode != 0

    writer = Writer(c.nodes)
    writer.start()
    changes: list[float] = []  # when each switchover was asked for and the primary killed
    tls: list[tuple[float, float, int]] = []  # (from, to, timeline) while one leader wrote

    def settle(seconds: float = 3.0) -> None:
        leader = c.leader(60)
        n = len(writer.acked)
        wait_for("the writer commits on the new primary", lambda: len(writer.acked) > n + 5, 60)
        start = writer.acked[-1].acked
        time.sleep(seconds)
        tls.append((start, writer.acked[-1].sent, timeline(leader)))

    def switchover() -> None:  # to the synchronous standby, the only candidate in synchronous mode
        old = c.leader()
        changes.append(time.time())
        out = cli(old, "switchover", "--force")
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for("another member leads", lambda: c.leader() not in (None, old), 30)

    try:
        settle()
        switchover()
        settle()
        victim = c.leader()
        changes.append(time.time())
        victim.signal_agent(signal.SIGKILL)
        victim.kill_postgres(signal.SIGKILL, tree=True)
        wait_for("another member takes over", lambda: c.leader() not in (None, victim), 60)
        victim.start()
        settle()
        switchover()
        settle()
    finally:
        writer.stop.set()
        writer.join(10)
    leader = c.leader()
    c.wait_healthy(90)
    # an old primary starts without the archive until its rejoin settles, then gets it back
    wait_for("restore_command on every member", lambda: all(
        sql(n.dsn(), "SHOW restore_command")[0][0] for n in c.nodes), 30)
    pgbackrest(conf, leader, "check")  # the last segment switched and archived
    acked = writer.acked
    ids_sent_after = {w.id: w.sent for w in acked}
    final_tl = timeline(leader)
    assert final_tl >= 4, final_tl
    names = archived(conf)
    for tl in range(2, final_tl + 1):
        assert f"{tl:08X}.history" in names, (tl, sorted(n for n in names if n.endswith(".history")))
    info = json.loads(pgbackrest(conf, leader, "info", "--output=json"))
    assert info[0]["status"]["code"] == 0, info

    # Targets: inside each stretch one leader wrote, and a second either side of each change.
    targets = [(a + b) / 2 for a, b, _ in tls]
    targets += [changes[0] + 1, changes[1] - 1, changes[1] + 1, changes[2] - 1]
    port = 25400
    for k, target in enumerate(sorted(targets) + [None]):
        into = shared / f"pitr-{k}"
        report = restore(leader, into, port + k, target)
        try:
            present = rows(port + k)
        finally:
            stop_copy(into)
        if target is None:
            missing = {w.id for w in acked} - present
            assert not missing, f"restore to the archive's end lost acknowledged rows {sorted(missing)[:10]}"
            assert report["timeline"] == final_tl + 1, report
            continue
        before = {w.id for w in acked if w.acked < target}
        after = {i for i, sent in ids_sent_after.items() if sent > target}
        assert before <= present, f"target {iso(target)}: acknowledged rows missing {sorted(before - present)[:10]}"
        assert not (after & present), f"target {iso(target)}: rows sent later present {sorted(after & present)[:10]}"
        inside = [tl for a, b, tl in tls if a <= target <= b]
        if inside:
            assert report["followed_timeline"] == inside[0], (report, tls)
        assert report["last_transaction"], report
    assert backed_up < min(targets)

    new_cluster_from_the_backup(make_cluster, conf, acked, tls[2])

    # A replica rebuilt from the repository: restored, then streaming; no base backup taken.
    replica = next(n for n in c.nodes if n is not leader)
    out = cli(replica, "reinit", replica.name, "--force", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for("the rebuilt replica streams", lambda: (replica.status() or {}).get("replication_state") == "streaming", 120)
    assert "with method pgbackrest" in replica.log_text().split("reinitializing")[-1], replica.log_text()[-3000:]
    last = max(w.id for w in acked)
    wait_for("the rebuilt replica has every row", lambda: last in {r[0] for r in sql(replica.dsn(), "SELECT id FROM w")},
             30)


def new_cluster_from_the_backup(make_cluster: Callable[..., LocalCluster], conf: Path, acked: list[Write],
                                stretch: tuple[float, float, int]) -> None:
    """``bootstrap.method: pgbackrest``: a second cluster made from the first one's backup,
    recovered to a moment after the failover, then archiving into a stanza of its own."""
    start, end, tl = stretch
    target = (start + end) / 2
    with conf.open("a") as f:
        f.write("\n[restored]\npg1-socket-path=/tmp\n")
    restored = make_cluster(scope="restored", nodes=2, dcs={
        "ttl": 8, "loop_wait": 1, "retry_timeout": 3,
        "archive": {"pgbackrest": {"stanza": "restored", "config": str(conf)}, "max_delay": 60}})
    for n in restored.nodes:
        n.config["bootstrap"].update(method="pgbackrest",
                                     pgbackrest={"stanza": STANZA, "config": str(conf), "to": iso(target)})
    restored.start(wait=False)
    leader = restored.leader(180)
    restored.wait_healthy(90)
    present = {r[0] for r in sql(leader.dsn(), "SELECT id FROM w")}
    before = {w.id for w in acked if w.acked < target}
    after = {w.id for w in acked if w.sent > target}
    assert before <= present, f"new cluster at {iso(target)}: acknowledged rows missing {sorted(before - present)[:10]}"
    assert not (after & present), f"new cluster at {iso(target)}: rows sent later present {sorted(after & present)[:10]}"
    assert f"recovery_target_time={iso(target).replace('T', ' ')}" in leader.log_text(), leader.log_text()[-2000:]
    # Nothing of the recovery is left behind: a target would stop (and promote) a later standby.
    assert sql(leader.dsn(), "SHOW recovery_target_time")[0][0] == ""
    assert timeline(leader) > tl
    wait_for("the new cluster's stanza", lambda: "stanza restored ready" in leader.log_text(), 60)
    sql(leader.dsn(), "INSERT INTO w VALUES (-1)")
    replica = next(n for n in restored.nodes if n is not leader)
    wait_for("the new cluster's replica has the new row",
             lambda: -1 in {r[0] for r in sql(replica.dsn(), "SELECT id FROM w")}, 60)
    out = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={conf}", "--stanza=restored",
                          f"--pg1-path={leader.data_dir}", f"--pg1-port={leader.pg_port}", "check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    restored.stop()
