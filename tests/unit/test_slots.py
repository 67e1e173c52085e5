"""Permanent slots and ignore_slots: the leader keeps them and publishes their positions; replicas
keep copies advanced to those positions; logical ones are refused with the reason."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from pgha.config.model import DynamicConfig
from pgha.config.replication import IgnoreSlot
from pgha.core import actions as a
from pgha.core.cluster import LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.slots import ignored
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view


def test_leader_keeps_the_permanent_slots_beside_the_members_slots() -> None:
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {"archiver": {}}})
    d = decide(snap(PRIMARY, view(n1=Member("n1"), n2=Member("n2")), name="n1", config=cfg))
    assert d.actions == (a.PublishLeaderStatus(frozenset({"n2"}), permanent=frozenset({"archiver"})),)


def test_replica_keeps_copies_advanced_to_the_positions_the_leader_published() -> None:
    cfg = DynamicConfig.model_validate({**CFG.model_dump(), "slots": {"archiver": {}}})
    v = replace(view(n1=Member("n1")), status=LeaderStatus("n1", 3, 5000, {"archiver": 4200, "gone": 1}))
    assert decide(snap(REPLICA, v, config=cfg)).actions == (a.CopySlots((("archiver", 4200),)),)
    assert decide(snap(REPLICA, v)).actions == ()  # no permanent slots configured: nothing to copy


def test_logical_permanent_slots_are_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="logical permanent slots are not supported yet"):
        DynamicConfig.model_validate({"slots": {"cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}}})


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
