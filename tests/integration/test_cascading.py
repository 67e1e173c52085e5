"""Cascading replication on a real 4-node cluster: a replica tagged ``replicatefrom: n2`` streams
from n2, falls back to the leader while n2 is down and returns when n2 does, keeps streaming
across a primary failover, and ``pgha topology`` draws the tree."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from pgha.testing import LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow


def downstream(node: Node) -> set[str]:
    """The standbys streaming from ``node`` (its pg_stat_replication)."""
    try:
        return {r[0] for r in sql(node.dsn(), "SELECT application_name FROM pg_stat_replication "
                                              "WHERE state = 'streaming'")}
    except Exception:  # noqa: BLE001 - a node being stopped or restarted
        return set()


def has_row(node: Node, k: int) -> bool:
    try:
        return bool(sql(node.dsn(), "SELECT 1 FROM cascade WHERE k = %s", (k,)))
    except Exception:  # noqa: BLE001
        return False


def test_cascading_replica_follows_its_upstream_falls_back_and_survives_failover(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=4, tags={"n4": {"replicatefrom": "n2"}})
    c.start()
    n1, n2, n3, n4 = c.nodes
    leader = c.wait_healthy(90, replicas=3)
    if leader is not n1:  # the tree below assumes n1 leads
        code, body, _ = http_request("POST", leader.api + "/switchover", {"leader": leader.name, "candidate": "n1"})
        assert code == 200, body
        c.wait_healthy(60, replicas=3)
    wait_for("n4 streaming from n2", lambda: "n4" in downstream(n2) and "n4" not in downstream(n1), 30)
    sql(n1.dsn(), "CREATE TABLE cascade (k int PRIMARY KEY)")
    sql(n1.dsn(), "INSERT INTO cascade VALUES (1)")
    wait_for("row 1 on n4 through n2", lambda: has_row(n4, 1), 20)

    def tree() -> list[str]:
        out = subprocess.run([sys.executable, "-m", "pgha", "topology", "-c", str(n1.config_path)],
                             capture_output=True, text=True, check=True).stdout
        return [line.split("|")[1].rstrip() for line in out.splitlines() if line.startswith("| ") and " n" in line]

    # each member publishes whom it follows on its next loop after it switched
    wait_for("pgha topology drawing n4 under n2", lambda: tree() == [" n1", " + n2", "   + n4", " + n3"], 15)

    n2.stop()  # the intermediate fails: n4 falls back to the leader
    wait_for("n4 streaming from the leader", lambda: "n4" in downstream(n1), 30)
    sql(n1.dsn(), "INSERT INTO cascade VALUES (2)")
    wait_for("row 2 on n4", lambda: has_row(n4, 2), 20)
    n2.start()
    wait_for("n4 back on n2", lambda: "n4" in downstream(n2) and "n4" not in downstream(n1), 60)

    n1.stop()  # the primary fails: n4 keeps streaming, from n2 or from n2 as the new leader
    new = wait_for("a new primary", lambda: next((n for n in (n2, n3, n4) if n.health("/primary") == 200), None), 60)
    sql(new.dsn(), "INSERT INTO cascade VALUES (3)")
    for n in (n2, n3, n4):
        if n is not new:
            wait_for(f"row 3 on {n.name}", lambda n=n: has_row(n, 3), 30)
    if new is not n4:
        wait_for("n4 streaming from n2 again", lambda: "n4" in downstream(n2), 30)
