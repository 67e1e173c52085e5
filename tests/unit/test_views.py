"""What operators see: the member table and /cluster say what clients see."""

from __future__ import annotations

from pgha.api.views import cluster_json
from pgha.cli.table import footer, rows
from pgha.config.model import DynamicConfig
from pgha.core import lease
from pgha.core.cluster import ClusterView, LeaderStatus, Member

DEMOTED = Member("n1", role="replica", state="running", note="leader lease about to expire: demoting")


def view(leader: Member) -> ClusterView:
    return ClusterView(initialize="1", leader="n1", status=LeaderStatus("n1", 1, 100),
                       members={"n1": leader, "n2": Member("n2", role="replica", state="streaming")})


def test_a_read_only_key_holder_is_not_shown_as_a_running_leader() -> None:
    table = {r["Member"]: r for r in rows(view(DEMOTED))}
    assert table["n1"]["Role"] == "Leader (read-only)"
    assert " Leader n1 does not accept writes: leader lease about to expire: demoting" in footer(view(DEMOTED), False)
    row = next(m for m in cluster_json(view(DEMOTED), "demo", False)["members"] if m["name"] == "n1")
    assert row["role"] == "leader" and row["writable"] is False and "demoting" in row["note"]


def test_a_writable_leader_shows_as_leader() -> None:
    primary = Member("n1", role="primary", state="running")
    assert {r["Member"]: r["Role"] for r in rows(view(primary))}["n1"] == "Leader"
    assert not [line for line in footer(view(primary), False) if "does not accept writes" in line]


def test_observing_postgres_fits_inside_the_demotion_margin() -> None:
    assert lease.observe_timeout(DynamicConfig(ttl=5, loop_wait=1, retry_timeout=2)) == 1.0
    assert lease.observe_timeout(DynamicConfig()) == 5.0
