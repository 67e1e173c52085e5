"""The ``sync`` key is shared with Patroni (a migration goes both ways on the same keys): pgha
writes Patroni's shape and reads Patroni's, its own, and what earlier pgha versions wrote."""

from __future__ import annotations

import json

from pgha.core.cluster import SyncState


def test_the_key_is_written_in_patronis_shape() -> None:
    assert json.loads(SyncState("p1", ("p3", "p2"), 1).to_json()) == {
        "leader": "p1", "sync_standby": "p3,p2", "quorum": 1}
    assert json.loads(SyncState("p1", (), 0).to_json()) == {"leader": "p1", "sync_standby": None, "quorum": 0}


def test_a_key_read_back_is_the_same_key() -> None:
    for key in (SyncState("p1", ("p3", "p2"), 1), SyncState("p1", ("p2",), 1), SyncState("p1", (), 0)):
        assert SyncState.from_json(key.to_json()) == key


def test_patronis_key_lists_every_standby_as_holding_every_commit() -> None:
    # Patroni's synchronous_mode on: quorum 0, and each listed standby has each acknowledged commit
    raw = json.dumps({"leader": "p1", "quorum": 0, "sync_standby": "p2, p3"})
    assert SyncState.from_json(raw) == SyncState("p1", ("p2", "p3"), 2)
    assert SyncState.from_json(json.dumps({"leader": "p1", "quorum": 1, "sync_standby": "p2,p3"})) == (
        SyncState("p1", ("p2", "p3"), 1))
    assert SyncState.from_json(json.dumps({"leader": "p1", "quorum": 0, "sync_standby": None})) == SyncState("p1")


def test_the_list_earlier_pgha_versions_wrote_still_reads() -> None:
    assert SyncState.from_json(json.dumps({"leader": "n1", "sync_standby": ["n2"], "quorum": 1})) == (
        SyncState("n1", ("n2",), 1))
    assert SyncState.from_json("{torn") is None
