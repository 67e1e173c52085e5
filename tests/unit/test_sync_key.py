"""The ``sync`` key is shared with Patroni (a migration goes both ways on the same keys): pgha
writes Patroni's shape and reads Patroni's, its own, and what earlier pgha versions wrote.

Patroni's ``quorum`` counts the listed nodes a racing standby must see besides itself,
len(active) - numsync (``patroni/quorum.py``); pgha's ``SyncState.quorum`` counts the listed
standbys certain to hold each commit, numsync. The key carries Patroni's number."""

from __future__ import annotations

import json

from pgha.core.cluster import SyncState
from pgha.core.sync import guarantee


def test_the_key_is_written_in_patronis_shape_and_count() -> None:
    # ANY 1 of three: Patroni's quorum is 3 - 1 = 2
    assert json.loads(SyncState("p1", ("p3", "p2", "p4"), 1).to_json()) == {
        "leader": "p1", "sync_standby": "p3,p2,p4", "quorum": 2}
    # mode on, one standby holding every commit: Patroni writes quorum 0 then
    assert json.loads(SyncState("p1", ("p2",), 1).to_json()) == {"leader": "p1", "sync_standby": "p2", "quorum": 0}
    assert json.loads(SyncState("p1", (), 0).to_json()) == {"leader": "p1", "sync_standby": None, "quorum": 0}


def test_a_key_read_back_is_the_same_key() -> None:
    for key in (SyncState("p1", ("p3", "p2", "p4"), 1), SyncState("p1", ("p2", "p3"), 2),
                SyncState("p1", ("p2",), 1), SyncState("p1", (), 0)):
        assert SyncState.from_json(key.to_json()) == key


def test_patronis_keys_read_as_the_standbys_that_hold_each_commit() -> None:
    # its mode on: quorum 0, every listed standby has each acknowledged commit
    on = SyncState.from_json(json.dumps({"leader": "p1", "quorum": 0, "sync_standby": "p2, p3"}))
    assert on == SyncState("p1", ("p2", "p3"), 2) and on.quorum == guarantee(on.members, '2 ("p2", "p3")')
    # quorum mode, synchronous_standby_names = ANY 1 (p2, p3, p4): Patroni's quorum 2
    anyone = SyncState.from_json(json.dumps({"leader": "p1", "quorum": 2, "sync_standby": "p2,p3,p4"}))
    assert anyone == SyncState("p1", ("p2", "p3", "p4"), 1)
    assert anyone.quorum == guarantee(anyone.members, "ANY 1 (p2, p3, p4)")
    assert SyncState.from_json(json.dumps({"leader": "p1", "quorum": 0, "sync_standby": None})) == SyncState("p1")


def test_the_list_earlier_pgha_versions_wrote_still_reads() -> None:
    assert SyncState.from_json(json.dumps({"leader": "n1", "sync_standby": ["n2", "n3"], "quorum": 1})) == (
        SyncState("n1", ("n2", "n3"), 1))
    assert SyncState.from_json("{torn") is None
