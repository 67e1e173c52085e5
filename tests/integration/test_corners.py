"""Corners that used to leave a node stuck or the cluster without a primary (real processes)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, Node, wait_for
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
    c.start()
    old = c.leader()
    winner, ahead = (n for n in c.nodes if n is not old) if old.name != "n3" else (c.nodes[1], c.nodes[2])
    if winner.name == "n3":
        winner, ahead = ahead, winner
    assert ahead.name == "n3"
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
    # n3 received WAL past the winner's fork point: it is rewound and streams from the winner
    wait_for(f"{ahead.name} streaming again", lambda: ahead.health("/replica") == 200, 60)
    assert "past" in ahead.log_text() and "rewinding" in ahead.log_text()
    sql(winner.dsn(), "CREATE TABLE after_fork AS SELECT 1 AS x")
    wait_for("n3 has the new timeline's writes", lambda: sql(ahead.dsn(), "SELECT x FROM after_fork") == [(1,)], 20)
