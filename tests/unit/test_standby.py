"""A standby cluster's decisions: its leader follows the other cluster and never promotes while
standby_cluster is set; removing the section promotes it."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.replication import StandbyCluster
from pgha.core import actions as a
from pgha.core import sync
from pgha.core.cluster import FailoverRequest, Member
from pgha.core.decide import decide
from pgha.core.standby import REMOTE
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view

STANDBY = CFG.model_copy(update={"standby_cluster": StandbyCluster(host="10.0.0.5", port=5432)})


def leader_view() -> object:
    return replace(view(leader="n1", n1=Member("n1", role="replica"), n2=Member("n2", role="replica")), config=STANDBY)


def test_standby_leader_points_at_the_other_cluster_instead_of_promoting() -> None:
    d = decide(snap(replace(REPLICA, following=None), leader_view(), name="n1", config=STANDBY))
    assert d.actions == (a.FollowRemote(),) and "10.0.0.5:5432" in d.note


def test_standby_leader_following_the_other_cluster_stays_a_standby() -> None:
    d = decide(snap(replace(REPLICA, following=REMOTE), leader_view(), name="n1", config=STANDBY))
    assert [x.slots for x in d.actions if isinstance(x, a.PublishLeaderStatus)] == [frozenset({"n2"})]
    assert len(d.actions) == 1 and d.note.startswith("standby leader")


def test_primary_of_a_cluster_made_standby_demotes_to_follow_the_other_cluster() -> None:
    d = decide(snap(PRIMARY, leader_view(), name="n1", config=STANDBY))
    assert d.actions == (a.Demote("fast", follow=REMOTE, reason="standby_cluster is set"),)


def test_standby_leader_restarts_its_postgres_as_a_standby() -> None:
    pg = replace(REPLICA, running=False, following=REMOTE, down_since=99.0)
    assert decide(snap(pg, leader_view(), name="n1", config=STANDBY)).actions == (
        a.StartPostgres(primary=False, follow=REMOTE, timeout=29.0),)


def test_removing_standby_cluster_promotes_the_standby_leader() -> None:
    v = replace(leader_view(), config=CFG)
    assert decide(snap(replace(REPLICA, following=REMOTE), v, name="n1")).actions == (a.Promote(),)


def test_other_members_follow_the_standby_leader_and_no_commit_is_synchronous() -> None:
    d = decide(snap(replace(REPLICA, following="n9"), leader_view(), name="n2", config=STANDBY))
    assert d.actions == (a.FollowLeader("n1"),)
    assert sync.mode(STANDBY.model_copy(update={"synchronous_mode": True})) == "off"


def test_switchover_in_a_standby_cluster_moves_the_standby_leader_without_promoting_anyone() -> None:
    streaming = Member("n2", role="replica", state="streaming", lsn=REPLICA.lsn, replayed_lsn=REPLICA.lsn)
    v = replace(leader_view(), members={"n1": Member("n1", role="replica"), "n2": streaming},
                failover=FailoverRequest("n1", "n2"))
    assert decide(snap(replace(REPLICA, following=REMOTE), v, name="n1", config=STANDBY)).actions == (
        a.HandOver("n2"),)
    # the candidate took the key: it clears the request and follows the other cluster, no promotion
    taken = replace(v, leader="n2")
    d = decide(snap(replace(REPLICA, following="n1"), taken, name="n2", config=STANDBY))
    assert [type(x) for x in d.actions] == [a.ClearFailover]
    cleared = replace(taken, failover=None)
    assert decide(snap(replace(REPLICA, following="n1"), cleared, name="n2", config=STANDBY)).actions == (
        a.FollowRemote(),)
