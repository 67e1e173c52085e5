"""Permanent slots and ignore_slots: the leader keeps them and publishes their positions; replicas
keep copies advanced to those positions; logical ones are copied to replicas once, then advanced."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from pgha.config.model import DynamicConfig
from pgha.config.replication import IgnoreSlot
from pgha.core import actions as a
from pgha.core import parameters
from pgha.core.cluster import LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.slots import ignored
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view


def test_leader_keeps_the_permanent_slots_beside_the_members_slots() -> None:
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {"archiver": {}}})
    d = decide(snap(PRIMARY, view(n1=Member("n1"), n2=Member("n2")), name="n1", config=cfg))
    assert d.actions == (a.PublishLeaderStatus(frozenset({"n2"}), permanent=frozenset({"archiver"}),
                                               retain=(("n2", 0.0),)),)


def test_replica_keeps_copies_advanced_to_the_positions_the_leader_published() -> None:
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {"archiver": {}}})
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200, "gone": 1}))
    assert decide(snap(REPLICA, v, config=cfg)).actions == (a.TendReplicaSlots((("archiver", 4200),)),)
    assert decide(snap(REPLICA, v)).actions == ()  # no permanent slots configured: nothing to copy


def test_replica_drops_the_idle_member_slots_left_from_its_time_as_primary() -> None:
    # found by the matrix: an old primary rejoined without a rewind kept its slots for n2 and n3;
    # they held every WAL segment since, and its 2 GiB disk filled two scenarios later
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {"archiver": {}},
                                        "ignore_slots": [{"name": "keep_me"}]})
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200}))
    old = replace(REPLICA, idle_physical_slots=frozenset({"n2", "n3", "archiver", "keep_me"}))
    assert decide(snap(old, v, config=cfg)).actions == (a.TendReplicaSlots((("archiver", 4200),), drop=("n2", "n3")),)
    assert decide(snap(old, v)).actions == (a.TendReplicaSlots((), drop=("archiver", "keep_me", "n2", "n3")),)


LOGICAL = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {
    "archiver": {}, "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}}})


def test_a_logical_slot_needs_its_database_and_plugin() -> None:
    with pytest.raises(ValidationError, match="a logical slot needs database and plugin"):
        DynamicConfig.model_validate({"slots": {"cdc": {"type": "logical", "plugin": "pgoutput"}}})
    with pytest.raises(ValidationError, match="for logical slots only"):
        DynamicConfig.model_validate({"slots": {"arch": {"database": "app"}}})


def test_logical_slots_turn_on_logical_wal_and_standby_feedback_everywhere() -> None:
    params = parameters.wanted(LOGICAL, None)
    assert params["wal_level"] == "logical" and params["hot_standby_feedback"] == "on"
    assert "hot_standby_feedback" not in parameters.wanted(CFG, None)


def test_leader_keeps_the_logical_slots_too() -> None:
    d = decide(snap(PRIMARY, view(n1=Member("n1")), name="n1", config=LOGICAL))
    publish = d.actions[0]
    assert isinstance(publish, a.PublishLeaderStatus) and publish.logical == (("cdc", "app", "pgoutput"),)


def test_replica_copies_a_logical_slot_once_the_primary_has_it() -> None:
    unpublished = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200}))
    assert decide(snap(REPLICA, unpublished, config=LOGICAL)).actions == (a.TendReplicaSlots((("archiver", 4200),)),)
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200, "cdc": 4100}))
    assert decide(snap(REPLICA, v, config=LOGICAL)).actions == (a.CopyLogicalSlots("n1", ("cdc",)),)


def test_replica_advances_its_logical_copy_no_further_than_it_replayed() -> None:
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200, "cdc": 4900}))
    pg = replace(REPLICA, logical_slots={"cdc": 3000}, replayed_lsn=4500)
    assert decide(snap(pg, v, config=LOGICAL)).actions == (
        a.TendReplicaSlots((("archiver", 4200),), logical=(("cdc", "app", 4500),)),)
    level = replace(pg, logical_slots={"cdc": 4500})
    assert decide(snap(level, v, config=LOGICAL)).actions == (a.TendReplicaSlots((("archiver", 4200),)),)


def test_a_logical_copy_further_on_than_the_primary_is_copied_again() -> None:
    """Left from a time this node was primary: past what the consumer confirmed on the new
    history, so a failover to this node would skip events."""
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"cdc": 4000}))
    pg = replace(REPLICA, logical_slots={"cdc": 4800})
    assert decide(snap(pg, v, config=LOGICAL)).actions == (a.CopyLogicalSlots("n1", ("cdc",)),)


def test_ignore_slots_match_on_every_field_they_give() -> None:
    rules = [IgnoreSlot(name="keep_me"), IgnoreSlot(type="logical", plugin="wal2json")]
    assert ignored({"name": "keep_me", "type": "physical"}, rules)
    assert ignored({"name": "x", "type": "logical", "plugin": "wal2json", "database": "app"}, rules)
    assert not ignored({"name": "x", "type": "logical", "plugin": "pgoutput"}, rules)
    assert not ignored({"name": "stray", "type": "physical"}, rules)


def test_status_key_carries_slot_positions_both_ways() -> None:
    st = LeaderStatus("n1", 3, 5000, {"archiver": 4200})
    assert LeaderStatus.from_json(st.to_json()) == st
    assert LeaderStatus.from_json('{"leader": "n1", "timeline": 3, "lsn": 5}').slots == {}
    gone = LeaderStatus("n1", 3, 5000, retain={"n2": 0.0, "n3": 1700000000.5})
    assert LeaderStatus.from_json(gone.to_json()) == gone
    # Patroni's own status key (a migration reads it): its retain_slots is a list of names
    assert LeaderStatus.from_json('{"optime": 5, "retain_slots": ["n2"]}').retain == {}


def test_the_leader_keeps_a_gone_members_slot_for_member_slots_ttl() -> None:
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "member_slots_ttl": "10min"})
    assert cfg.member_slots_seconds == 600
    present = view(n1=Member("n1"), n2=Member("n2"))
    v = replace(present, status=LeaderStatus("n1", 3, 5000, retain={"n2": 0.0, "n3": 0.0}))
    (first,) = decide(snap(PRIMARY, v, name="n1", config=cfg, wall_now=1000.0)).actions
    assert isinstance(first, a.PublishLeaderStatus)
    assert first.slots == frozenset({"n2", "n3"}) and dict(first.retain) == {"n2": 0.0, "n3": 1000.0}
    later = replace(present, status=LeaderStatus("n1", 3, 5000, retain=dict(first.retain)))
    (kept,) = decide(snap(PRIMARY, later, name="n1", config=cfg, wall_now=1599.0)).actions
    assert isinstance(kept, a.PublishLeaderStatus) and kept.slots == frozenset({"n2", "n3"})
    assert kept.retain == first.retain  # nothing changed: the status key is not rewritten
    (gone,) = decide(snap(PRIMARY, later, name="n1", config=cfg, wall_now=1600.0)).actions
    assert isinstance(gone, a.PublishLeaderStatus) and gone.slots == frozenset({"n2"})


def test_a_new_leader_keeps_the_old_primarys_slot_and_zero_ttl_keeps_nothing() -> None:
    v = view(leader="n2", n2=Member("n2"), n3=Member("n3"))  # n1, the old primary, is gone; status names it
    (publish,) = decide(snap(PRIMARY, v, name="n2", wall_now=50.0)).actions
    assert isinstance(publish, a.PublishLeaderStatus) and publish.slots == frozenset({"n1", "n3"})
    zero = DynamicConfig.model_validate({**CFG.model_dump(), "member_slots_ttl": 0})
    (none,) = decide(snap(PRIMARY, v, name="n2", config=zero, wall_now=50.0)).actions
    assert isinstance(none, a.PublishLeaderStatus) and none.slots == frozenset({"n3"})


@pytest.mark.parametrize("value", ["30 sec", "-1", -5, "1.5h"])
def test_member_slots_ttl_that_is_not_a_duration_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="is not a duration"):
        DynamicConfig.model_validate({"member_slots_ttl": value})


def test_a_logical_slot_added_at_runtime_waits_for_the_primary_to_run_with_logical_wal() -> None:
    members = view(n1=Member("n1"), n2=Member("n2"))
    d = decide(snap(replace(PRIMARY, wal_level="replica"), members, name="n1", config=LOGICAL,
                    applied_parameters=parameters.wanted(LOGICAL, None)))
    publish = d.actions[0]
    assert isinstance(publish, a.PublishLeaderStatus) and publish.logical == ()  # not tried: it would fail
    assert publish.permanent == frozenset({"archiver"})  # the physical one is kept meanwhile
    assert d.note == "leader; permanent logical slot cdc waiting for a restart: wal_level must be logical (runs with replica)"
    # the leader renders logical WAL like the replicas: its reload is not held back
    assert parameters.wanted(LOGICAL, None)["wal_level"] == "logical"
    d = decide(snap(replace(PRIMARY, wal_level="logical"), members, name="n1", config=LOGICAL))
    assert d.actions[0].logical == (("cdc", "app", "pgoutput"),) and d.note == "leader"  # type: ignore[attr-defined]
