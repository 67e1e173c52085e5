"""Failsafe mode in the decision core: a primary cut off from etcd stays primary only on every
member's confirmation, counted like a lease renewal; members that confirmed do not race."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pgha.core import actions as a
from pgha.core import failsafe, lease
from pgha.core.cluster import Member, parse_failsafe
from pgha.core.decide import decide
from pgha.core.failsafe import topology
from pgha.core.snapshot import Snapshot
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view

FS = CFG.model_copy(update={"failsafe_mode": True})  # ttl 6, loop_wait 1, retry_timeout 2
KEY = {"n1": "http://h1/patroni", "n2": "http://h2/patroni", "n3": "http://h3/patroni"}
MEMBERS = {n: Member(n, role="primary" if n == "n1" else "replica", api_url=f"http://h{n[1]}") for n in ("n1", "n2", "n3")}


def cut_off(**kw: object) -> Snapshot:
    """n1, the primary, 100 s on its clock; etcd did not answer its last renewal."""
    base: dict[str, object] = {"name": "n1", "dcs_ok": False, "config": FS, "lease_valid_until": 101.5,
                               "lease_renewed_at": 95.5}
    base.update(kw)
    return snap(PRIMARY, replace(view(**MEMBERS), failsafe=KEY), **base)  # type: ignore[arg-type]


def test_cut_off_primary_asks_every_other_member_to_confirm_it() -> None:
    d = decide(cut_off(lease_valid_until=105.0, lease_renewed_at=99.0))  # its lease still holds
    assert d.actions == (a.ConfirmFailsafe((("n2", "http://h2/patroni"), ("n3", "http://h3/patroni"))),)


def test_first_round_starts_when_the_failed_renewal_ends_the_lease_hold() -> None:
    # Renewed at 97 (loop_wait 1): the next renewal was due at 98 and failed at 100, when the lease
    # stopped holding. Its key still lives until 103 at least; the fence fires at 102.
    s = cut_off(lease_valid_until=103.0, lease_renewed_at=97.0)
    assert not s.holds_lease()
    assert [type(x) for x in decide(s).actions] == [a.ConfirmFailsafe]
    assert [type(x) for x in decide(replace(s, now=101.1)).actions] == [a.Demote]  # no time left for a round


def test_confirmed_primary_stays_primary_after_its_lease_stops_holding() -> None:
    s = cut_off(failsafe_asked_at=99.8, failsafe_confirmed_at=99.8)
    assert not s.holds_lease()
    d = decide(s)
    assert d.actions == () and "confirm it (failsafe mode)" in d.note


def test_confirmed_primary_asks_again_every_half_loop() -> None:
    s = cut_off(failsafe_asked_at=99.4, failsafe_confirmed_at=99.4)
    assert [type(x) for x in decide(s).actions] == [a.ConfirmFailsafe]


def test_failed_round_leaves_the_lease_rule_in_charge() -> None:
    s = cut_off(failsafe_asked_at=99.9, failsafe_confirmed_at=None)
    assert [type(x) for x in decide(s).actions] == [a.Demote]
    still_leased = cut_off(failsafe_asked_at=99.9, failsafe_confirmed_at=None, lease_valid_until=105.0,
                           lease_renewed_at=99.0)
    assert [type(x) for x in decide(still_leased).actions] == [a.ConfirmFailsafe]


def test_confirmations_that_stopped_coming_end_within_retry_timeout() -> None:
    # The last accepted round was sent at 97: it counts until 97 + loop_wait + retry_timeout = 100.
    assert [type(x) for x in decide(cut_off(failsafe_asked_at=99.9, failsafe_confirmed_at=97.0)).actions] == [a.Demote]
    assert [type(x) for x in decide(cut_off(now=99.9, failsafe_asked_at=99.9, failsafe_confirmed_at=97.0)).actions] == []


def test_without_failsafe_mode_the_primary_demotes_as_before() -> None:
    s = cut_off(config=CFG, failsafe_asked_at=99.8, failsafe_confirmed_at=99.8)
    assert [type(x) for x in decide(s).actions] == [a.Demote]


def test_primary_missing_from_the_failsafe_key_demotes() -> None:
    s = replace(cut_off(), cluster=replace(cut_off().cluster, failsafe={"n2": "http://h2/patroni"}))
    assert [type(x) for x in decide(s).actions] == [a.Demote]


def test_no_failsafe_key_yet_means_no_failsafe() -> None:
    s = replace(cut_off(), cluster=replace(cut_off().cluster, failsafe=None))
    assert [type(x) for x in decide(s).actions] == [a.Demote]


def test_paused_primary_asks_nobody() -> None:
    s = cut_off(config=FS.model_copy(update={"pause": True}))
    assert decide(s).actions == ()


def test_back_on_etcd_with_the_key_expired_the_confirmed_primary_takes_it_again() -> None:
    s = snap(PRIMARY, replace(view(leader=None, **MEMBERS), failsafe=KEY), name="n1", config=FS,
             failsafe_asked_at=99.5, failsafe_confirmed_at=99.5, lease_valid_until=106.0, lease_renewed_at=100.0)
    assert [type(x) for x in decide(s).actions] == [a.AcquireLeader]
    unconfirmed = replace(s, failsafe_confirmed_at=None)
    assert [type(x) for x in decide(unconfirmed).actions] == [a.Demote]


def test_replica_that_confirmed_a_primary_within_ttl_does_not_race() -> None:
    s = snap(REPLICA, replace(view(leader=None, **MEMBERS), failsafe=KEY), config=FS, failsafe_ping=("n1", 95.0))
    d = decide(s)
    assert d.actions == () and "n1 asked us to confirm" in d.note
    assert [type(x) for x in decide(replace(s, failsafe_ping=("n1", 94.0))).actions] == [a.AcquireLeader]


def test_replica_races_once_the_member_that_asked_publishes_that_it_demoted() -> None:
    demoted = {**MEMBERS, "n1": Member("n1", role="replica", api_url="http://h1")}
    s = snap(REPLICA, replace(view(leader=None, **demoted), failsafe=KEY), config=FS, failsafe_ping=("n1", 95.0))
    assert [type(x) for x in decide(s).actions] == [a.AcquireLeader]
    still = replace(s, cluster=replace(s.cluster, members={**demoted, "n1": Member("n1", role="primary")}))
    assert decide(still).actions == ()


def test_after_a_long_outage_a_replica_waits_briefly_for_the_members_whose_records_expired() -> None:
    only_me = {"n2": MEMBERS["n2"]}
    s = snap(REPLICA, replace(view(leader=None, **only_me), failsafe=KEY), config=FS, leader_lost_at=99.0)
    d = decide(s)
    assert d.actions == () and "waiting for n1, n3" in d.note
    assert [type(x) for x in decide(replace(s, leader_lost_at=97.0)).actions] == [a.AcquireLeader]


def test_member_unknown_to_the_failsafe_key_may_not_race() -> None:
    s = snap(REPLICA, replace(view(leader=None, **MEMBERS), failsafe={"n1": "u", "n3": "u"}), config=FS)
    d = decide(s)
    assert d.actions == () and "not in the failsafe key" in d.note


def test_leader_writes_the_failsafe_key_with_every_member() -> None:
    s = snap(PRIMARY, view(**MEMBERS), name="n1", config=FS)
    publish = decide(s).actions[0]
    assert isinstance(publish, a.PublishLeaderStatus)
    assert publish.failsafe == tuple(sorted(KEY.items()))
    off = decide(replace(s, config=CFG)).actions[0]
    assert isinstance(off, a.PublishLeaderStatus) and off.failsafe is None


def test_failsafe_key_reads_patronis_format_and_ignores_garbage() -> None:
    assert parse_failsafe('{"n1": "http://h1:8008/patroni"}') == {"n1": "http://h1:8008/patroni"}
    assert parse_failsafe("[1, 2]") is None
    assert parse_failsafe("not json") is None
    assert parse_failsafe('{"n1": 3}') is None


@given(sent=st.floats(0, 1000), now=st.floats(0, 1100))
def test_a_confirmed_round_never_outlasts_the_window_in_which_members_do_not_race(sent: float, now: float) -> None:
    """Members that accepted at ``sent`` or later refuse to race until ``sent + ttl``: the primary
    must have stopped counting on the round, and its fence must have fired, before then."""
    s = replace(cut_off(now=now, lease_valid_until=None, lease_renewed_at=None),
                failsafe_asked_at=sent, failsafe_confirmed_at=sent)
    if failsafe.holds(s):
        assert now < sent + FS.ttl - FS.retry_timeout
    assert lease.fence_deadline(failsafe.valid_until(sent, FS), now, FS) < sent + FS.ttl
    if now >= sent + FS.ttl:
        assert any(isinstance(x, a.Demote) for x in decide(s).actions)


def test_members_that_confirmed_the_primary_stay_in_the_failsafe_key_until_their_records_are_back() -> None:
    s = cut_off(failsafe_asked_at=99.5, failsafe_confirmed_at=99.5)
    key = dict(s.cluster.failsafe or {})
    back = replace(s, dcs_ok=True, cluster=replace(s.cluster, members={s.name: s.cluster.members[s.name]}))
    assert dict(topology(back) or ()) == key
    assert [n for n, _ in topology(replace(back, failsafe_confirmed_at=None)) or ()] == [s.name]
