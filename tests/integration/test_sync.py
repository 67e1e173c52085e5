"""Synchronous replication on real processes: standby choice, replacement, strict blocking,
refusal to promote an asynchronous replica, quorum mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow
TTL = 6


def sync_cluster(make_cluster: Callable[..., LocalCluster], nodes: int = 3, **dcs: Any) -> LocalCluster:
    c = make_cluster(nodes=nodes, dcs={**FAST, "synchronous_mode": True, **dcs})
    c.start()
    return c


def status(n: Node) -> dict[str, Any]:
    return n.status() or {}


def sync_standbys(leader: Node) -> list[str]:
    return list(status(leader).get("synchronous_standbys", []))


def writable(node: Node) -> bool:
    try:
        return sql(node.dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001
        return False


def kill_node(n: Node) -> None:
    n.signal_agent(signal.SIGKILL)
    n.kill_postgres(signal.SIGKILL)


def test_sync_standby_is_chosen_recorded_and_shown(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster)
    leader = c.leader()
    names = wait_for("one synchronous standby recorded", lambda: (s := sync_standbys(leader)) and len(s) == 1 and s, 15)
    assert sql(leader.dsn(), "SHOW synchronous_standby_names")[0][0] == f'FIRST 1 ("{names[0]}")'
    rows = sql(leader.dsn(), "SELECT application_name, sync_state FROM pg_stat_replication")
    assert (names[0], "sync") in rows
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(leader.config_path), "-f", "json"],
                         capture_output=True, text=True, check=True).stdout
    roles = {r["Member"]: r["Role"] for r in json.loads(out)}
    assert roles[names[0]] == "Sync Standby" and sorted(roles.values()) == ["Leader", "Replica", "Sync Standby"]
    assert status(leader)["writes_acknowledged"] is True
    standby = c.node(names[0])
    other = next(n for n in c.nodes if n.name not in (leader.name, standby.name))
    wait_for("the sync standby answering /sync", lambda: standby.health("/sync") == 200, 10)
    assert standby.health("/synchronous") == 200 and standby.health("/async") == 503
    assert other.health("/sync") == 503 and other.health("/async") == 200


def test_killed_sync_standby_is_replaced_within_a_loop(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster)
    leader = c.leader()
    (first,) = wait_for("sync standby", lambda: sync_standbys(leader), 15)
    kill_node(c.node(first))
    t0 = time.monotonic()
    other = next(n.name for n in c.nodes if n.name not in (first, leader.name))
    wait_for("the other replica becomes synchronous", lambda: sync_standbys(leader) == [other], 10, 0.05)
    assert time.monotonic() - t0 < 3
    sql(leader.dsn(), "CREATE TABLE after_swap AS SELECT 1")  # commits are acknowledged again


def test_strict_mode_blocks_commits_without_a_standby_until_one_returns(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster, nodes=2, synchronous_mode_strict=True)
    leader = c.leader()
    (replica,) = [n for n in c.nodes if n is not leader]
    wait_for("sync standby", lambda: sync_standbys(leader) == [replica.name], 15)
    replica.stop()
    wait_for("primary reports it cannot acknowledge", lambda: status(leader).get("writes_acknowledged") is False, 15)
    metrics = http_request("GET", leader.api + "/metrics")[1]
    assert 'pgha_writes_acknowledged{name="' + leader.name + '",scope="demo"} 0.0' in metrics
    done = threading.Event()

    def commit() -> None:
        with psycopg.connect(leader.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE strict_wait AS SELECT 1 AS x")
        done.set()

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    time.sleep(3)
    assert not done.is_set(), "a commit was acknowledged with no synchronous standby in strict mode"
    replica.start()
    assert done.wait(60), "the commit did not complete after the standby returned"
    assert wait_for("acknowledging again", lambda: status(leader).get("writes_acknowledged"), 15)


def test_non_strict_mode_falls_back_to_async_and_says_so(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster, nodes=2)
    leader = c.leader()
    (replica,) = [n for n in c.nodes if n is not leader]
    wait_for("sync standby", lambda: sync_standbys(leader) == [replica.name], 15)
    replica.stop()
    wait_for("fallback reported", lambda: status(leader).get("synchronous_fallback_async") is True, 15)
    sql(leader.dsn(), "CREATE TABLE async_ok AS SELECT 1")  # does not wait
    assert "replication is asynchronous" in leader.log_text()
    metrics = http_request("GET", leader.api + "/metrics")[1]
    assert 'pgha_sync_fallback_async{name="' + leader.name + '",scope="demo"} 1.0' in metrics


def test_primary_and_sync_standby_killed_together_async_replica_is_not_promoted(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster)
    leader = c.leader()
    (standby,) = wait_for("sync standby", lambda: sync_standbys(leader), 15)
    survivor = next(n for n in c.nodes if n.name not in (standby, leader.name))
    kill_node(leader)
    kill_node(c.node(standby))
    end = time.monotonic() + TTL + 5
    while time.monotonic() < end:
        assert not writable(survivor)
        time.sleep(0.2)
    assert "not a synchronous standby" in survivor.log_text()
    assert "not a synchronous standby" in (survivor.status() or {}).get("note", "")


def test_quorum_mode_with_three_replicas_and_node_count_two(make_cluster: Callable[..., LocalCluster]) -> None:
    c = sync_cluster(make_cluster, nodes=4, synchronous_mode="quorum", synchronous_node_count=2)
    leader = c.leader()
    wait_for("three quorum standbys", lambda: len(sync_standbys(leader)) == 3, 20)
    setting = sql(leader.dsn(), "SHOW synchronous_standby_names")[0][0]
    assert setting.startswith("ANY 2 (")
    assert {r[0] for r in sql(leader.dsn(), "SELECT sync_state FROM pg_stat_replication")} == {"quorum"}
    sql(leader.dsn(), "CREATE TABLE q AS SELECT 42 AS x")
    kill_node(leader)
    new = wait_for("a quorum standby promoted", lambda: next((n for n in c.nodes if n is not leader and writable(n)), None),
                   TTL + 10, 0.1)
    assert sql(new.dsn(), "SELECT x FROM q") == [(42,)]


def test_quorum_commit_acknowledged_by_a_paused_standby_only_is_never_lost(make_cluster: Callable[..., LocalCluster]) -> None:
    """The reproduced loss: ANY 1 (b, c), strict; c pauses replay (it still flushes, so it still
    acknowledges), b is cut off, then the primary dies. Only c holds the last commits; b must not
    take over, whatever c's replay lag."""
    c = sync_cluster(make_cluster, synchronous_mode="quorum", synchronous_mode_strict=True)
    a = c.leader()
    wait_for("both replicas in the quorum", lambda: len(sync_standbys(a)) == 2, 20)
    b, paused = [n for n in c.nodes if n is not a]
    sql(a.dsn(), "CREATE TABLE acked (id bigint PRIMARY KEY, pad text)")
    sql(paused.dsn(), "SELECT pg_wal_replay_pause()")
    acked: list[int] = []
    halt = threading.Event()

    def write() -> None:
        with psycopg.connect(a.dsn(), autocommit=True) as conn:
            i = 0
            while not halt.is_set():
                i += 1
                try:
                    conn.execute("INSERT INTO acked VALUES (%s, repeat('x', 200))", (i,))
                except psycopg.Error:
                    return
                acked.append(i)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    time.sleep(8)  # c's replay falls well over maximum_lag_on_failover (1 MiB) behind
    receiver = sql(b.dsn(), "SELECT pid FROM pg_stat_wal_receiver")[0][0]
    os.kill(receiver, signal.SIGSTOP)  # b stops receiving: from now on only c acknowledges
    try:
        time.sleep(1)  # b stays within maximum_lag_on_failover of the last primary position
        kill_node(a)
    finally:
        # Like a dropped connection: whatever the dead primary still had in flight to b is gone
        # (b's Postgres restarts in standby mode without it) and b could promote now.
        os.kill(receiver, signal.SIGKILL)
    halt.set()
    t.join(10)
    new = wait_for("a new primary", lambda: next((n for n in (b, paused) if writable(n)), None), TTL + 20, 0.1)
    assert new is paused, f"{new.name} took over without the commits only {paused.name} held"
    have = {r[0] for r in sql(new.dsn(), "SELECT id FROM acked")}
    lost = [i for i in acked if i not in have]
    assert not lost, f"{len(lost)} acknowledged commits lost"
