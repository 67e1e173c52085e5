"""The pooler's pure decision, the leader's handshake gate, and the pooler's own config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgha import errors as e
from pgha.core.poolers import CUT_GRACE, Handover, PoolerRecord, gate
from pgha.pooler.config import load_pooler_config
from pgha.pooler.decide import Held, Seen, plan
from pgha.pooler.pgbouncer import databases_ini

H = Handover("n1", "n2", since=100.0, revision=42)


def test_handover_announced_pauses_and_answers_once_paused() -> None:
    seen = Seen(now=10.0, etcd_ok=True, leader="n1", handover=H, confirmed="n1")
    p = plan(seen, Held(target="n1"), max_pause=30)
    assert p.pause and p.ack == 0  # PAUSE not done yet: nothing to answer
    p = plan(seen, Held(target="n1", pause_wanted_since=9.0, paused=True), max_pause=30)
    assert p.pause and p.ack == 42


def test_new_leader_confirmed_resumes_on_it() -> None:
    seen = Seen(now=10.0, etcd_ok=True, leader="n2", handover=H, confirmed="n2")
    p = plan(seen, Held(target="n1", pause_wanted_since=9.0, paused=True), max_pause=30)
    assert not p.pause and p.target == "n2" and not p.wants_pause


def test_leader_not_yet_writable_keeps_the_pause() -> None:
    seen = Seen(now=10.0, etcd_ok=True, leader="n2", handover=None, confirmed=None)
    assert plan(seen, Held(target="n1"), max_pause=30).pause


def test_no_leader_pauses_at_once() -> None:
    seen = Seen(now=10.0, etcd_ok=True, leader=None, handover=None, confirmed=None)
    p = plan(seen, Held(target="n1"), max_pause=30)
    assert p.pause and "no leader" in p.note


def test_etcd_down_keeps_a_target_that_still_confirms() -> None:
    seen = Seen(now=10.0, etcd_ok=False, leader=None, handover=None, confirmed="n1")
    p = plan(seen, Held(target="n1"), max_pause=30)
    assert not p.pause and p.target == "n1"


def test_pause_past_its_bound_resumes_nowhere_without_a_primary() -> None:
    seen = Seen(now=100.0, etcd_ok=True, leader=None, handover=None, confirmed=None)
    p = plan(seen, Held(target="n1", pause_wanted_since=60.0, paused=True), max_pause=30)
    assert not p.pause and p.target is None and p.wants_pause


def test_handover_past_the_bound_resumes_on_the_old_primary_still_confirmed() -> None:
    seen = Seen(now=100.0, etcd_ok=True, leader="n1", handover=H, confirmed="n1")
    p = plan(seen, Held(target="n1", pause_wanted_since=60.0, paused=True), max_pause=30)
    assert not p.pause and p.target == "n1" and p.ack == 0


names = st.sampled_from([None, "n1", "n2", "n3"])


@given(now=st.floats(0, 1000), etcd_ok=st.booleans(), leader=names, confirmed=names, target=names,
       handing=st.booleans(), since=st.one_of(st.none(), st.floats(0, 1000)), paused=st.booleans(),
       max_pause=st.floats(0.1, 100))
def test_never_routes_to_an_unconfirmed_node_and_never_pauses_past_the_bound(
        now: float, etcd_ok: bool, leader: str | None, confirmed: str | None, target: str | None, handing: bool,
        since: float | None, paused: bool, max_pause: float) -> None:
    handover = Handover(leader, "n9", 0.0, 7) if handing and leader else None
    seen = Seen(now=now, etcd_ok=etcd_ok, leader=leader, handover=handover, confirmed=confirmed)
    p = plan(seen, Held(target=target, pause_wanted_since=since, paused=paused), max_pause)
    if not p.pause and p.target is not None:
        assert p.target == confirmed  # only to a node whose /primary just answered 200
        assert p.target == leader or not etcd_ok  # ... and that holds the key, when etcd can tell
    if since is not None and since <= now and now - since >= max_pause:
        assert not p.pause


def test_gate_announces_then_waits_then_cuts_then_goes_on_after_the_bound() -> None:
    poolers = {"b1": PoolerRecord("b1"), "b2": PoolerRecord("b2")}
    assert gate(poolers, None, "n1", "n2", 100.0, 5.0).announce
    assert gate(poolers, Handover("n1", "n3", 100.0, 42), "n1", "n2", 100.0, 5.0).announce  # another candidate
    g = gate({**poolers, "b1": PoolerRecord("b1", "paused", "n1", 42)}, H, "n1", "n2", 102.0, 5.0)
    assert g.waiting == ("b2",) and not g.ready
    g = gate(poolers, H, "n1", "n2", 105.0, 5.0)
    assert g.cut == ("b1", "b2") and not g.ready
    g = gate(poolers, H, "n1", "n2", 105.0 + CUT_GRACE, 5.0)
    assert g.ready and g.late == ("b1", "b2")
    acked = {n: PoolerRecord(n, "paused", "n1", 42) for n in poolers}
    assert gate(acked, H, "n1", "n2", 101.0, 5.0).ready


def test_gate_without_poolers_or_with_timeout_zero_hands_over_at_once() -> None:
    assert gate({}, None, "n1", "n2", 0.0, 5.0).ready
    assert gate({"b1": PoolerRecord("b1")}, None, "n1", "n2", 0.0, 0.0).ready


def test_databases_file_points_every_entry_at_the_primary() -> None:
    text = databases_ini({"*": "", "app": "dbname=app pool_size=10"}, "10.0.0.2", 5432)
    assert "[databases]" in text
    assert "* = host=10.0.0.2 port=5432\n" in text
    assert "app = host=10.0.0.2 port=5432 dbname=app pool_size=10\n" in text


def test_pooler_config_error_names_the_key_and_the_file(tmp_path: Path) -> None:
    f = tmp_path / "pooler.yml"
    f.write_text("scope: demo\nname: b1\nmax_pause: soon\npgbouncer: {admin: x, databases_file: /tmp/x}\n")
    with pytest.raises(e.ConfigError, match=r"pooler.yml.*max_pause"):
        load_pooler_config(f)
    f.write_text("scope: demo\nname: b1\n")
    with pytest.raises(e.ConfigError, match="nothing to drive"):
        load_pooler_config(f)
