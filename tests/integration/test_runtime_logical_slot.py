"""A permanent logical slot added at runtime to a cluster running with ``wal_level = replica``:
the leader renders ``wal_level = logical`` like the replicas, shows the pending restart with its
reason, reports once that the slot waits for that restart (no failure per loop), and after
``pgha restart --pending`` the slot exists on the primary and its copies on the replicas."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from pgha.testing import LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow

CDC = {"cdc": {"type": "logical", "database": "postgres", "plugin": "test_decoding"}}


def pgha(c: LocalCluster, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "pgha", *args, "-c", str(c.nodes[0].config_path)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def has_slot(n: Node, name: str) -> bool:
    try:
        return bool(sql(n.dsn(), "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)))
    except Exception:  # noqa: BLE001 - restarting
        return False


def patroni(n: Node) -> dict[str, object]:
    body = http_request("GET", n.api + "/patroni")[1]
    return body if isinstance(body, dict) else {}


def test_logical_slot_added_at_runtime_waits_for_a_restart_then_exists_everywhere(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    assert sql(leader.dsn(), "SHOW wal_level")[0][0] == "replica"
    assert http_request("PATCH", leader.api + "/config", {"slots": CDC})[0] == 200

    # Every member, the leader included, renders logical WAL and shows the restart it waits for.
    for n in c.nodes:
        wait_for(f"{n.name} pending a restart for wal_level",
                 lambda n=n: patroni(n).get("pending_restart_reason", {}).get("wal_level")  # type: ignore[union-attr]
                 == {"old_value": "replica", "new_value": "logical"}, 20)
    rows = {r["Member"]: r for r in json.loads(pgha(c, "list", "-f", "json"))}
    assert rows[leader.name]["Pending restart"] == "*"
    assert rows[leader.name]["Pending restart reason"] == "wal_level: replica->logical"
    pretty = pgha(c, "list")
    assert f"Leader {leader.name}: permanent logical slot cdc waiting for a restart: wal_level must be logical" in pretty
    wait_for("the leader's note in /patroni", lambda: "waiting for a restart" in str(patroni(leader).get("note")), 10)
    log = leader.log_text()
    # reported once, as a state; never as a failure on every loop (before: PublishLeaderStatus failed)
    assert "PublishLeaderStatus failed" not in log and "logical decoding requires" not in log
    assert log.count("waiting for a restart: wal_level must be logical") == 1, log[-3000:]
    assert not has_slot(leader, "cdc")

    out = pgha(c, "restart", "--pending", "--force").splitlines()
    assert [line.split(":")[0] for line in out][-1] == leader.name  # the primary last
    assert c.leader().name == leader.name
    wait_for("the slot on the primary", lambda: has_slot(leader, "cdc"), 20)
    for n in c.nodes:
        if n is not leader:
            wait_for(f"the slot's copy on {n.name}", lambda n=n: has_slot(n, "cdc"), 40)
    wait_for("no pending restart left", lambda: not any(patroni(n).get("pending_restart") for n in c.nodes), 20)
    assert "waiting for a restart" not in str(patroni(leader).get("note"))
