"""Corners that used to leave a node stuck or the cluster without a primary (real processes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow


def kill_node(n: Node) -> None:
    n.signal_agent(signal.SIGKILL)
    n.kill_postgres(signal.SIGKILL)


def writable(n: Node) -> bool:
    try:
        return sql(n.dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001
        return False


def test_replica_that_was_ahead_of_the_winner_is_rewound_and_streams_again(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(tags={"n3": {"nofailover": True}})
    old, winner, ahead = c.nodes  # n1 leads, n2 wins the failover, n3 (nofailover) is ahead of it
    c.etcd.start()
    for n in c.nodes:
        n.config["etcd"]["hosts"] = c.etcd.hosts
    old.start()
    wait_for("n1 leading", lambda: old.health("/primary") == 200, 60)
    winner.start()
    ahead.start()
    c.wait_healthy(90)
    sql(old.dsn(), "CREATE TABLE t (id int, pad text)")
    wait_for("both replicas streaming", lambda: len(c.streaming_replicas()) == 2, 20)
    receiver = sql(winner.dsn(), "SELECT pid FROM pg_stat_wal_receiver")[0][0]
    os.kill(receiver, signal.SIGSTOP)  # the future winner stops receiving; n3 goes on
    try:
        with psycopg.connect(old.dsn(), autocommit=True) as conn:
            for i in range(300):
                conn.execute("INSERT INTO t VALUES (%s, repeat('x', 500))", (i,))
        time.sleep(1.5)  # the leader publishes its position; n3 has it all
        kill_node(old)
    finally:
        os.kill(receiver, signal.SIGKILL)  # what was in flight to the winner is gone
    wait_for(f"{winner.name} promoted", lambda: writable(winner), 40)
    # n3 received WAL past the winner's fork point: it is rewound and streams from the winner.
    # (Judged by the new timeline's writes, not by /replica alone: a standby past the fork streams
    # the old timeline from the winner for a moment before Postgres refuses the new one.)
    sql(winner.dsn(), "CREATE TABLE after_fork AS SELECT 1 AS x")
    wait_for("n3 has the new timeline's writes", lambda: sql(ahead.dsn(), "SELECT x FROM after_fork") == [(1,)], 60)
    wait_for(f"{ahead.name} streaming again", lambda: ahead.health("/replica") == 200, 20)
    assert "past" in ahead.log_text() and "rewinding" in ahead.log_text()


def etcdctl(c: LocalCluster, *args: str) -> str:
    import subprocess

    return subprocess.run(["etcdctl", "--endpoints", c.etcd.members[0].client_url, *args],
                          capture_output=True, text=True, check=True, timeout=10).stdout


def current_timeline(n: Node) -> int:
    try:
        return int(sql(n.dsn(), "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")[0][0], 16)
    except Exception:  # noqa: BLE001 - read-only again (or down) meanwhile: not on any timeline as a writer
        return 1 << 30


def test_wiped_key_space_never_gives_a_standby_the_old_timeline(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    timeline = (old.status() or {})["timeline"]
    sysid = (old.status() or {})["database_system_identifier"]
    etcdctl(c, "del", "--prefix", "/pgha/demo/")
    end = time.monotonic() + 4 * FAST["ttl"]
    while time.monotonic() < end:
        writers = [n for n in c.nodes if writable(n)]
        assert len(writers) <= 1, f"two writable nodes: {[n.name for n in writers]}"
        for n in writers:  # a former standby writable on the old timeline would be a fork
            assert n is old or current_timeline(n) > timeline, f"{n.name} writable on the old timeline"
        time.sleep(0.1)
    new = c.leader()
    assert etcdctl(c, "get", "--print-value-only", "/pgha/demo/initialize").strip() == sysid
    wait_for("every other node streaming", lambda: len(c.streaming_replicas()) == 2, 60)
    assert "bootstrapped cluster" not in "".join(n.log_text().split("bootstrapped cluster", 1)[-1] for n in c.nodes)
    assert new.name in {n.name for n in c.nodes}


def test_a_bootstrap_claim_left_empty_by_a_dead_winner_is_reclaimed(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2)
    c.etcd.start()
    etcdctl(c, "put", "/pgha/demo/initialize", "")  # a winner that died before initdb finished
    for n in c.nodes:
        n.config["etcd"]["hosts"] = c.etcd.hosts
        n.start()
    c.wait_healthy(3 * FAST["ttl"] + 60)
    assert any("reclaimed a bootstrap claim" in n.log_text() for n in c.nodes)
    assert etcdctl(c, "get", "--print-value-only", "/pgha/demo/initialize").strip().isdigit()


def test_takeover_stays_watch_driven_after_etcd_compacted_and_the_watch_reconnected(
        make_cluster: Callable[..., LocalCluster]) -> None:
    slow_loop = {"ttl": 10, "loop_wait": 4, "retry_timeout": 3}
    c = make_cluster(dcs=slow_loop)
    c.start()
    old = c.leader()
    import json as _json

    status = _json.loads(etcdctl(c, "endpoint", "status", "-w", "json"))
    etcdctl(c, "compact", str(status[0]["Status"]["header"]["revision"]))
    c.etcd.kill(0)  # every watch breaks and reconnects, past the compaction
    c.etcd.start()
    wait_for("the leader renewing again", lambda: old.health("/primary") == 200, 20)
    time.sleep(2)
    kill_node(old)
    t0 = time.monotonic()
    wait_for("a new primary", lambda: any(writable(n) for n in c.nodes if n is not old), 30, 0.05)
    # the lease runs out at most ttl after the kill; a loop-paced takeover would add up to loop_wait
    assert time.monotonic() - t0 < slow_loop["ttl"] + 1.5


def test_an_invalid_config_written_into_etcd_keeps_the_cluster_on_its_last_valid_settings(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """A value of the wrong type (or a key this version does not know) written straight into etcd
    must not send the agents back to bootstrap.dcs: here that would turn synchronous mode, set at
    runtime, off. The agents keep their last valid settings and name the key in their logs."""
    c = make_cluster(nodes=2)
    c.start()
    leader = c.leader()
    (replica,) = [n for n in c.nodes if n is not leader]
    assert http_request("PATCH", leader.api + "/config", {"synchronous_mode": "on"})[0] == 200
    wait_for("a synchronous standby", lambda: (leader.status() or {}).get("synchronous_standbys") == [replica.name], 30)

    stored = json.loads(etcdctl(c, "get", "--print-value-only", "/pgha/demo/config"))
    etcdctl(c, "put", "/pgha/demo/config", json.dumps({**stored, "ttl": "soon", "future_key": 1}))
    wait_for("the bad key named in every log", lambda: all(
        "config in etcd: ttl:" in n.log_text() and "running under the last valid settings" in n.log_text()
        for n in c.nodes), 20)
    time.sleep(3)  # a few loops under the broken config
    status = leader.status() or {}
    assert status.get("synchronous_mode") == "on" and status.get("synchronous_standbys") == [replica.name], status
    assert sql(leader.dsn(), "SHOW synchronous_standby_names")[0][0] != ""
    for n in c.nodes:  # what monitoring sees: the problem in /patroni, and a gauge
        assert "config in etcd: ttl:" in (n.status() or {}).get("config_problem", "")
        gauge = next(x for x in str(http_request("GET", n.api + "/metrics")[1]).splitlines()
                     if x.startswith("pgha_config_problem{"))
        assert gauge.endswith(" 1.0"), gauge
    # An agent restarted meanwhile runs under the config its earlier run saved, not under its
    # bootstrap.dcs (asynchronous here), which would have it judge failovers without the sync rule.
    replica.stop()
    replica.start()
    wait_for("the restarted agent naming the saved config", lambda: (
        "running under the last valid settings saved in" in replica.log_text()), 30)
    wait_for("the restarted replica streaming", lambda: replica.health("/replica") == 200, 30)
    assert (replica.status() or {}).get("synchronous_mode") == "on", replica.status()

    # The REST API stays strict about what it stores: a PATCH must leave a config this version reads whole.
    code, body, _ = http_request("PATCH", leader.api + "/config", {"ttl": 6})
    assert code == 400 and "future_key: unknown key" in str(body), body
    # A key only a newer pgha knows (a rolling upgrade) costs nothing but a warning naming it.
    etcdctl(c, "put", "/pgha/demo/config", json.dumps({**stored, "future_key": 1}))
    wait_for("the unknown key named as ignored", lambda: all(
        "unknown key(s) future_key: ignored" in n.log_text() for n in c.nodes), 20)
    assert http_request("PATCH", leader.api + "/config", {"future_key": None})[0] == 200
    wait_for("the config valid again", lambda: all(
        "the config in etcd is valid again" in n.log_text() for n in c.nodes), 20)
    # (the log line comes from the loop that read the config; its report is published at its end)
    wait_for("no config_problem in /patroni", lambda: all(
        "config_problem" not in (n.status() or {"config_problem": "down"}) for n in c.nodes), 10)
    wait_for("the restarted replica a synchronous standby again",
             lambda: (leader.status() or {}).get("synchronous_standbys") == [replica.name], 30)


def test_a_second_agent_started_with_a_taken_name_stops_and_the_leader_never_changes(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(dcs=dict(FAST))
    impostor = c.nodes[2]
    impostor.config["name"] = "n1"  # a copied node file: n1's name, its own host and data
    c.etcd.start()
    for n in c.nodes[:2]:
        n.config["etcd"]["hosts"] = c.etcd.hosts
        n.start()
    wait_for("n1 or n2 leads with the other streaming", lambda: len(c.primaries()) == 1 and len(
        c.streaming_replicas()) == 1, 90)
    leader = c.leader()
    timeline = int(sql(leader.dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[0][0])
    before = http_request("GET", leader.api + "/cluster", timeout=3)[1]
    n1_url = next(m["api_url"] for m in before["members"] if m["name"] == "n1")

    impostor.config["etcd"]["hosts"] = c.etcd.hosts
    impostor.start()
    impostor.wait_agent_exit(FAST["ttl"] + FAST["loop_wait"] + 30)
    log = impostor.log_text()
    assert "two nodes share a name; this one stops" in log, log[-2000:]
    assert impostor.postmaster_pid() is None and not (impostor.data_dir / "PG_VERSION").exists()
    # Nothing changed hands: the same leader on the same timeline, n1's record still n1's.
    assert c.leader() is leader
    assert int(sql(leader.dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]) == timeline
    after = http_request("GET", leader.api + "/cluster", timeout=3)[1]
    assert next(m["api_url"] for m in after["members"] if m["name"] == "n1") == n1_url
    n1 = c.node("n1")
    assert "taking it over" not in n1.log_text() and "two nodes share a name" not in n1.log_text()


def test_a_primary_whose_postgres_exits_on_every_start_releases_the_key_at_once(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """Its port taken by another process: each restart in place fails at once. Such a start fails
    again; the key goes at once (as Patroni lets it go), not after ``primary_start_timeout``
    (300 s by default), so that a replica takes over. The matrix found pgha holding it 302 s."""
    c = make_cluster(dcs={**FAST, "primary_start_timeout": 300})
    c.start()
    old = c.leader()
    old.signal_agent(signal.SIGSTOP)  # so that the port is taken before the agent restarts Postgres
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Postgres: past TIME_WAIT, never a listener
    try:
        old.kill_postgres(signal.SIGKILL, tree=True)
        wait_for("the port taken", lambda: _take(squatter, old.pg_port), 10)
        killed = time.monotonic()
        old.signal_agent(signal.SIGCONT)
        new = wait_for("a replica takes over", lambda: next(
            (n for n in c.nodes if n is not old and writable(n)), None), FAST["ttl"] + 30)
        took = time.monotonic() - killed
        assert took < FAST["ttl"] + 10, f"the key went {took:.1f} s after the crash"
        # Not "no postmaster": by now the agent may be trying a read-only start (a postmaster.pid
        # until the bind fails) or rewinding (pg_rewind's single-user postgres writes one too).
        assert not writable(old) and "could not bind" in (old.data_dir.parent / "data.postgres.log").read_text()
        assert "postgres exited while starting: releasing the leader key" in old.log_text()
        assert new is c.leader()
    finally:
        old.signal_agent(signal.SIGCONT)
        squatter.close()
    # the port back: the old primary rejoins as a replica
    wait_for("the old primary streams again", lambda: old.health("/replica") == 200, 90)


def _take(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    sock.listen()
    return True


def test_a_primary_whose_disk_fills_hands_over_and_rejoins_once_space_is_back(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """Every node on a small tmpfs (data, pg_wal, logs, the agent's own files); the primary's
    filled to the last byte. The matrix found the agent's lease keeper dead after the fence's
    deadline file could not be written: its lease expired, was never granted again, and its
    record and slot went with it, so the old primary never streamed again (a rewind every
    20 s). Then the leader held its key for all of ``primary_start_timeout``: its restart failed
    before Postgres began (its configuration could not be written), which did not count as a
    start that failed. Now a replica takes over and the old primary rejoins once space is back."""
    from tests.catalogue import small_disk

    c = make_cluster(dcs=FAST)
    unmount = [small_disk(n, "256m") for n in c.nodes]
    try:
        c.start()
        old = c.leader()
        filler = old.dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # unbuffered: the last write fails with ENOSPC and nothing is left to flush
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * (1 << 16)):
                    pass
        finally:
            os.close(fd)
        try:
            # No write needs a new WAL segment: Postgres runs on until its fence, unable to move its
            # deadline, stops it; its restart then cannot even write its configuration.
            new = wait_for("a replica takes over", lambda: next(
                (n for n in c.nodes if n is not old and writable(n)), None), 4 * FAST["ttl"] + 30)
        finally:
            filler.unlink()
        sql(new.dsn(), "CREATE TABLE after_the_disk_filled (x int)")
        wait_for("the old primary streams again", lambda: old.health("/replica") == 200, 90)
        assert c.primaries() == [new]
        wait_for("the table on the old primary", lambda: sql(
            old.dsn(), "SELECT to_regclass('after_the_disk_filled') IS NOT NULL")[0][0], 30)
        assert "requested lease not found" not in old.log_text()
    finally:
        c.stop()
        for u in unmount:
            u()


def test_a_postgres_that_starts_on_a_full_disk_but_refuses_every_connection_counts_as_a_failed_start(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """The matrix's disk-full cell (sync): the fence stopped the full primary, its restart in place
    began, and every connection died with 'could not write init file' (a backend writes its
    relation cache file first). The start waited for all of primary_start_timeout (283 s) with the
    leader key held, as Patroni does. A start that gets only that answer now ends after a grace,
    Postgres stopped, as a failed start: the decision then gives the key up at once."""
    import asyncio

    from pgha import errors as e
    from pgha.config import load_local_config
    from pgha.postgres import startup
    from pgha.postgres.controller import PostgresController
    from tests.catalogue import small_disk

    c = make_cluster(nodes=1, dcs=FAST)
    n = c.nodes[0]
    unmount = small_disk(n, "128m")
    try:
        c.start()
        c.leader()
        n.signal_agent(signal.SIGKILL)
        n.wait_agent_exit(5)
        n.kill_postgres(signal.SIGKILL, tree=True)  # as the fence does
        wait_for("postgres gone", lambda: n.postmaster_pid() is None, 10)
        # What recovery does: the relation cache files go, and the first backend writes them again.
        for init in n.data_dir.glob("**/pg_internal.init"):
            init.unlink()
        filler = n.dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:  # all but the last 64 KiB: room for the postmaster's files, not for a relation cache file
            left = os.statvfs(n.dir).f_bavail * os.statvfs(n.dir).f_frsize - (64 << 10)
            os.posix_fallocate(fd, 0, left)
        finally:
            os.close(fd)
        pg = PostgresController(load_local_config(str(n.config_path)))
        t0 = time.monotonic()
        with pytest.raises(e.Unopenable, match="could not write init file|No space left"):
            asyncio.run(pg.start(120))
        took = time.monotonic() - t0
        assert pg.postmaster_pid() is None, "the unopenable postgres was left running"
        assert pg.start_failed_at is not None and pg.start_failed_at >= t0
        print(f"start given up after {took:.1f} s (grace {startup.GRACE:g} s)")
    finally:
        with contextlib.suppress(OSError):
            (n.dir / "filler").unlink()
        c.stop()
        unmount()


def test_a_promotion_records_the_exact_fork_of_the_new_timeline(make_cluster: Callable[..., LocalCluster]) -> None:
    """The history entry is the switch point of the new timeline's history file, not the position
    the candidate's agent saw a loop before promoting. Replicas are judged against it: one holding
    WAL between the two counted as diverged, and pg_rewind found nothing to rewind, again and again
    for as long as it did not stream (the matrix: flapping link with 30 % loss, async)."""
    from pgha.core.timelines import switch_point

    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    old = c.leader()
    new = next(n for n in c.nodes if n is not old)
    wait_for("a streaming replica", lambda: new.health("/replica") == 200, 60)
    sql(old.dsn(), "CREATE TABLE moving (x bigint)")
    stop = time.monotonic() + 60

    def write() -> None:  # WAL keeps moving up to the switchover's stop
        with contextlib.suppress(psycopg.Error), psycopg.connect(old.dsn(), autocommit=True) as conn:
            while time.monotonic() < stop:
                conn.execute("INSERT INTO moving SELECT g FROM generate_series(1, 500) g")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(1)
    status, body, _ = http_request("POST", old.api + "/switchover", {"leader": old.name, "candidate": new.name},
                                   timeout=60)
    assert status == 200, body
    stop = 0.0
    writer.join(10)
    wait_for(f"{new.name} writable", lambda: writable(new) or None, 30)
    file = sql(new.dsn(), "SELECT pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) "
                          "|| '.history')")[0][0]
    status, history, _ = http_request("GET", new.api + "/history")
    assert status == 200 and history, history
    timeline, recorded = history[-1][0], history[-1][1]
    assert recorded == switch_point(file, timeline), f"recorded {recorded}, the history file says:\n{file}"
