"""A standby cluster: a second pgha cluster (its own scope, on the same etcd) replicates from the
first cluster's primary. Its leader is a standby leader that the other member cascades from; it
survives the loss of its standby leader; a switchover moves the standby leader; one config change
promotes it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow


def has_row(node: Node, k: int) -> bool:
    try:
        return bool(sql(node.dsn(), "SELECT 1 FROM dr WHERE k = %s", (k,)))
    except Exception:  # noqa: BLE001 - not up yet, or restarting
        return False


def standby_leader(nodes: list[Node]) -> Node | None:
    found = [n for n in nodes if n.health("/standby-leader") == 200]
    return found[0] if len(found) == 1 else None


def test_standby_cluster_follows_the_other_cluster_survives_its_leader_and_promotes(
        make_cluster: Callable[..., LocalCluster]) -> None:
    main = make_cluster(nodes=2, scope="main")
    main.start()
    primary = main.leader()
    sql(primary.dsn(), "CREATE TABLE dr (k int PRIMARY KEY)")
    sql(primary.dsn(), "INSERT INTO dr VALUES (1)")

    dr = make_cluster(nodes=2, scope="dr", dcs={**FAST, "standby_cluster": {"host": "127.0.0.1",
                                                                            "port": primary.pg_port}})
    for n in dr.nodes:  # on the first cluster's etcd
        n.config["etcd"]["hosts"] = main.etcd.hosts
        n.start()
    lead = wait_for("a standby leader in the standby cluster", lambda: standby_leader(dr.nodes), 90)
    other = next(n for n in dr.nodes if n is not lead)
    wait_for("the other member streaming from the standby leader", lambda: other.health("/replica") == 200, 60)
    assert lead.health("/primary") == 503
    assert http_request("GET", lead.api + "/patroni")[1]["role"] == "standby_leader"
    wait_for("/cluster naming the standby leader and its replica", lambda: {
        m["name"]: m["role"] for m in http_request("GET", lead.api + "/cluster")[1]["members"]} == {
        lead.name: "standby_leader", other.name: "replica"}, 20)
    assert {r[0] for r in sql(lead.dsn(), "SELECT application_name FROM pg_stat_replication")} == {other.name}
    sql(primary.dsn(), "INSERT INTO dr VALUES (2)")
    for n in dr.nodes:
        wait_for(f"row 2 on {n.name}", lambda n=n: has_row(n, 2), 30)

    lead.stop()  # the standby leader dies: the other member takes over as standby leader
    wait_for(f"{other.name} as the standby leader", lambda: other.health("/standby-leader") == 200, 60)
    sql(primary.dsn(), "INSERT INTO dr VALUES (3)")
    wait_for(f"row 3 on {other.name}", lambda: has_row(other, 3), 30)
    lead.start()
    wait_for(f"{lead.name} back, streaming from {other.name}", lambda: lead.health("/replica") == 200, 60)

    # A switchover inside the standby cluster moves the standby leader: nobody is promoted, the
    # new standby leader follows the other cluster and the old one cascades from it.
    code, body, _ = http_request("POST", other.api + "/switchover", {"leader": other.name, "candidate": lead.name})
    assert code == 200, body
    wait_for(f"{lead.name} as the standby leader", lambda: lead.health("/standby-leader") == 200, 60)
    wait_for(f"{other.name} streaming from {lead.name}", lambda: other.health("/replica") == 200, 60)
    assert [n.name for n in dr.nodes if n.health("/primary") == 200] == []
    sql(primary.dsn(), "INSERT INTO dr VALUES (4)")
    for n in dr.nodes:
        wait_for(f"row 4 on {n.name}", lambda n=n: has_row(n, 4), 30)

    code, body, _ = http_request("PATCH", lead.api + "/config", {"standby_cluster": None})
    assert code == 200, body
    wait_for(f"{lead.name} promoted", lambda: lead.health("/primary") == 200, 60)
    sql(lead.dsn(), "INSERT INTO dr VALUES (100)")
    wait_for(f"row 100 on {other.name}", lambda: has_row(other, 100), 60)
    assert primary.health("/primary") == 200 and not has_row(primary, 100)  # the first cluster goes on alone
