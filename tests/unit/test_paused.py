"""Maintenance mode keeps the primary's route: the only writable primary takes back a leader key
that an etcd outage took, never one of two writable primaries; /primary counts on the lease up
to its expiry while paused, never beyond."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.model import DynamicConfig
from pgha.core import actions as a
from pgha.core import report
from pgha.core.cluster import ClusterView, LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.health import verdict
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view

PAUSED = DynamicConfig(**{**CFG.model_dump(), "pause": True})
ALONE = view(None, n1=Member("n1", role="primary"), n2=Member("n2", role="replica"), n3=Member("n3", role="replica"))


def paused_primary(cluster: ClusterView = ALONE, **kw: object) -> a.Decision:
    base: dict[str, object] = dict(config=PAUSED, leader_lost_at=98.0, name="n1")
    base.update(kw)
    return decide(snap(PRIMARY, cluster, **base))


def test_paused_primary_takes_back_the_leader_key_an_outage_took() -> None:
    d = paused_primary()
    assert [type(x) for x in d.actions] == [a.AcquireLeader]
    assert d.note == "paused: taking the leader key back as the only writable primary"


def test_paused_cluster_with_two_writable_primaries_gets_no_leader_from_pgha() -> None:
    two = view(None, n1=Member("n1", role="primary"), n2=Member("n2", role="primary"))
    for name in ("n1", "n2"):
        d = decide(snap(PRIMARY, two, name=name, config=PAUSED, leader_lost_at=90.0))
        assert d.actions == ()
        other = "n2" if name == "n1" else "n1"
        assert f"{other} also runs as a writable primary; pgha will not pick one" in d.note


def test_paused_primary_waits_a_loop_for_the_records_an_outage_expired() -> None:
    assert paused_primary(leader_lost_at=99.5).actions == ()  # less than loop_wait since the key was seen gone
    own_record_missing = view(None, n2=Member("n2", role="replica"))
    assert paused_primary(own_record_missing).actions == ()


def test_paused_primary_on_an_older_timeline_or_without_a_lease_does_not_take_the_key() -> None:
    newer = replace(ALONE, status=LeaderStatus("n2", 4, 6000))
    assert "older than the last primary's 4" in paused_primary(newer).note
    assert paused_primary(newer).actions == ()
    assert paused_primary(lease_valid_until=None).actions == ()


def test_paused_replica_or_stopped_node_takes_nothing() -> None:
    assert decide(snap(REPLICA, ALONE, config=PAUSED, leader_lost_at=90.0)).actions == ()
    stopped = replace(PRIMARY, running=False)
    assert decide(snap(stopped, ALONE, name="n1", config=PAUSED, leader_lost_at=90.0)).actions == ()


def test_without_pause_a_primary_without_the_key_still_demotes() -> None:
    assert [type(x) for x in decide(snap(PRIMARY, ALONE, name="n1", leader_lost_at=90.0)).actions] == [a.Demote]


def test_paused_leader_publishes_and_names_another_writable_node() -> None:
    both = view("n1", n1=Member("n1", role="primary"), n2=Member("n2", role="primary"))
    d = decide(snap(PRIMARY, both, name="n1", config=PAUSED))
    assert [type(x) for x in d.actions] == [a.PublishLeaderStatus]
    assert "n2 also running writable (holding no key: not routed)" in d.note


def leader_report(config: DynamicConfig, **kw: object) -> report.NodeReport:
    cluster = ClusterView(initialize="42", config=config, leader="n1", leader_lease=7, status=LeaderStatus("n1", 3, 5000))
    base = report.NodeReport(name="n1", scope="demo", host="127.0.0.1", port=5432, api_url="http://x", version="t",
                             tags={}, config=config, view=cluster, pg=PRIMARY, lease_valid_until=106.0, lease_id=7,
                             dcs_seen_at=100.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def primary_status(r: report.NodeReport, now: float) -> int:
    return verdict("/primary", {}, report.health(r, now))


def test_paused_primary_cut_off_from_etcd_answers_200_until_its_lease_could_expire() -> None:
    # renewed at 100, lease good until 106: unpaused, the demotion margin ends it at 103 (loop_wait + retry_timeout)
    assert primary_status(leader_report(CFG), 102.9) == 200
    assert primary_status(leader_report(CFG), 103.5) == 503
    assert primary_status(leader_report(PAUSED), 105.9) == 200  # nothing demotes, nobody else can hold the key
    assert primary_status(leader_report(PAUSED), 106.0) == 503  # the key may be gone: never by role alone
    assert primary_status(leader_report(PAUSED, pg=REPLICA), 102.0) == 503
