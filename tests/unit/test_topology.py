"""Cascading replication: whom a replica streams from, the leader's slots, and the tree the CLI
draws."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.model import Tags
from pgha.core import actions as a
from pgha.core.cluster import Member
from pgha.core.decide import decide
from pgha.core.topology import tree, upstream
from tests.unit.test_decide import PRIMARY, REPLICA, snap, view

CASCADE = Tags(replicatefrom="n2")


def streaming(name: str, **tags: object) -> Member:
    return Member(name, role="replica", state="streaming", tags=tags, following="n1")


def test_replica_streams_from_the_member_it_names_while_that_member_streams() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2"), n3=streaming("n3", replicatefrom="n2"))
    assert upstream(v, "n3", "n2", "n1") == "n2"
    d = decide(snap(REPLICA, v, name="n3", tags=CASCADE))
    assert d.actions == (a.FollowLeader("n2", slot=False),) and "replicatefrom" in d.note


def test_replica_falls_back_to_the_leader_when_its_upstream_is_gone_or_not_streaming() -> None:
    gone = view(n1=Member("n1", role="primary"), n3=streaming("n3", replicatefrom="n2"))
    stopped = view(n1=Member("n1", role="primary"), n2=Member("n2", role="replica", state="stopped"))
    for v in (gone, stopped):
        assert upstream(v, "n3", "n2", "n1") == "n1"
        pg = replace(REPLICA, following="n2")
        assert decide(snap(pg, v, name="n3", tags=CASCADE)).actions == (a.FollowLeader("n1"),)


def test_replica_already_streaming_from_its_upstream_stays() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2"))
    d = decide(snap(replace(REPLICA, following="n2"), v, name="n3", tags=CASCADE))
    assert d.actions == () and d.note == "replica of n1 via n2"


def test_two_replicas_naming_each_other_both_stream_from_the_leader() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2", replicatefrom="n3"),
             n3=streaming("n3", replicatefrom="n2"))
    assert upstream(v, "n3", "n2", "n1") == "n1" and upstream(v, "n2", "n3", "n1") == "n1"


def test_replicatefrom_naming_the_leader_or_itself_means_the_leader() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2"))
    assert upstream(v, "n2", "n1", "n1") == "n1" and upstream(v, "n2", "n2", "n1") == "n1"


def test_leader_keeps_no_slot_for_a_replica_that_cascades_from_another() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2"), n3=streaming("n3", replicatefrom="n2"),
             n4=streaming("n4", replicatefrom="gone"))
    (publish,) = decide(snap(PRIMARY, v, name="n1")).actions
    assert isinstance(publish, a.PublishLeaderStatus) and publish.slots == frozenset({"n2", "n4"})


def test_tree_puts_each_replica_under_the_member_it_follows() -> None:
    v = view(n1=Member("n1", role="primary"), n2=streaming("n2"), n3=streaming("n3"),
             n4=replace(streaming("n4"), following="n2"), n5=replace(streaming("n5"), following="n4"))
    assert tree(v) == [("n1", 0), ("n2", 1), ("n4", 2), ("n5", 3), ("n3", 1)]
