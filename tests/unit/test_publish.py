"""Which record changes are worth an etcd write (``core.publish``): the heartbeat's few bytes of
WAL alone are not, in the steady state; anything a failover or an operator reads is."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pgha.config.model import DynamicConfig, Tags
from pgha.core import publish
from pgha.core.cluster import ClusterView, LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.snapshot import PgState, Snapshot

CFG = DynamicConfig(ttl=30, loop_wait=10, retry_timeout=10)  # maximum_lag_on_failover 1 MiB
SLACK = publish.slack(CFG)
REPLICA = Member("n2", role="replica", state="streaming", timeline=2, lsn=1 << 30, replayed_lsn=1 << 30)
HEARTBEATS = 10 * 180  # bytes: ten heartbeat commits, one idle loop


def view(member: Member = REPLICA, leader: str | None = "n1") -> ClusterView:
    return ClusterView(initialize="42", config=CFG, leader=leader, members={member.name: member})


def moved(m: Member, by: int) -> Member:
    return replace(m, lsn=m.lsn + by, replayed_lsn=m.replayed_lsn + by)


def test_slack_is_small_against_the_failover_lag_bound_and_zero_in_synchronous_modes() -> None:
    assert 0 < SLACK <= CFG.maximum_lag_on_failover // 16
    assert publish.slack(CFG.model_copy(update={"synchronous_mode": True})) == 0
    assert publish.slack(CFG.model_copy(update={"synchronous_mode": "quorum"})) == 0
    assert publish.slack(CFG.model_copy(update={"maximum_lag_on_failover": 0})) == 0


def test_streaming_replica_moved_only_by_heartbeats_writes_nothing() -> None:
    assert not publish.member_due(view(), moved(REPLICA, HEARTBEATS), CFG)


def test_replica_moved_by_the_slack_is_written() -> None:
    assert publish.member_due(view(), moved(REPLICA, SLACK), CFG)


def test_every_byte_counts_while_there_is_no_leader() -> None:
    assert publish.member_due(view(leader=None), moved(REPLICA, 1), CFG)


def test_every_byte_counts_for_a_replica_that_does_not_stream() -> None:
    old = replace(REPLICA, state="running")
    assert publish.member_due(view(old), moved(old, 1), CFG)


def test_every_byte_counts_in_synchronous_mode() -> None:
    sync = CFG.model_copy(update={"synchronous_mode": True})
    assert publish.member_due(view(), moved(REPLICA, 1), sync)


def test_any_other_change_is_written_at_once() -> None:
    assert publish.member_due(view(), replace(REPLICA, state="running"), CFG)
    assert publish.member_due(view(), replace(REPLICA, timeline=3), CFG)
    assert publish.member_due(view(), replace(REPLICA, tags={"nofailover": True}), CFG)
    assert publish.member_due(view(), moved(REPLICA, -1), CFG)  # a position going back: a rewind
    assert publish.member_due(ClusterView(leader="n1"), REPLICA, CFG)  # no record at all


def test_status_written_when_the_position_moved_by_the_slack_or_anything_else_changed() -> None:
    old = LeaderStatus("n1", 2, 1 << 30, {"keep": 1 << 30})
    assert not publish.status_due(old, replace(old, lsn=old.lsn + HEARTBEATS), CFG)
    assert publish.status_due(old, replace(old, lsn=old.lsn + SLACK), CFG)
    assert publish.status_due(old, replace(old, leader="n2"), CFG)
    assert publish.status_due(old, replace(old, timeline=3), CFG)
    assert not publish.status_due(old, replace(old, slots={"keep": (1 << 30) + HEARTBEATS}), CFG)
    assert publish.status_due(old, replace(old, slots={"keep": 1 << 30, "new": 0}), CFG)
    assert publish.status_due(old, replace(old, retain={"n3": 1.0}), CFG)


@given(st.lists(st.integers(0, 2 * SLACK), max_size=40))
def test_a_published_position_never_trails_the_live_one_by_the_slack(steps: list[int]) -> None:
    stored, live = REPLICA, REPLICA
    for step in steps:
        live = moved(live, step)
        if publish.member_due(view(stored), live, CFG):
            stored = live
        assert 0 <= live.lsn - stored.lsn < SLACK


def test_election_counts_the_slack_so_a_replica_too_far_behind_is_still_never_promoted() -> None:
    # ``status`` trails the last primary position by up to the slack: a replica exactly
    # maximum_lag_on_failover behind the stored status may be further behind the real one.
    pg = PgState(data_dir_empty=False, sysid="42", running=True, in_recovery=True, timeline=2,
                 lsn=1 << 30, replayed_lsn=1 << 30, streaming=True, following="n1", last_streaming_at=99.0)
    top = pg.lsn + CFG.maximum_lag_on_failover
    cluster = ClusterView(initialize="42", config=CFG, leader=None, members={"n2": REPLICA},
                          status=LeaderStatus("n1", 2, top))
    s = Snapshot(now=100.0, name="n2", tags=Tags(), config=CFG, cluster=cluster, dcs_ok=True, pg=pg, lease_valid_until=130.0)
    assert "maximum_lag_on_failover" in decide(s).note
    s = replace(s, cluster=replace(cluster, status=LeaderStatus("n1", 2, top - SLACK)))
    assert "maximum_lag_on_failover" not in decide(s).note
