"""The node report's derived views: health inputs, the member record, /status."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.model import DynamicConfig
from pgha.core import report
from pgha.core.cluster import ClusterView, LeaderStatus, SyncState
from pgha.core.health import verdict
from pgha.core.jobs import Busy, Job
from pgha.core.snapshot import PgState

SYNC_CFG = DynamicConfig(ttl=6, loop_wait=1, retry_timeout=2, synchronous_mode=True)
REPLICA = PgState(data_dir_empty=False, running=True, in_recovery=True, timeline=2, lsn=900, replayed_lsn=800,
                  streaming=True, following="n1")
PRIMARY = PgState(data_dir_empty=False, running=True, in_recovery=False, timeline=2, lsn=1000, replayed_lsn=1000)


def node(name: str, pg: PgState, sync: SyncState | None = None, **kw: object) -> report.NodeReport:
    view = ClusterView(initialize="1", config=SYNC_CFG, leader="n1", leader_lease=7, status=LeaderStatus("n1", 2, 1000),
                       sync=sync)
    base = report.NodeReport(name=name, scope="demo", host="127.0.0.1", port=5432, api_url="http://x", version="t",
                             tags={}, config=SYNC_CFG, view=view, pg=pg, lease_valid_until=100.0, lease_id=7, loop_at=50.0,
                             dcs_seen_at=50.0)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_recorded_sync_standby_answers_sync_and_synchronous_not_async() -> None:
    h = report.health(node("n2", REPLICA, SyncState("n1", ("n2",))), now=50.0)
    assert h.sync_standby
    assert verdict("/sync", {}, h) == 200
    assert verdict("/synchronous", {}, h) == 200
    assert verdict("/async", {}, h) == 503


def test_replica_not_in_the_sync_key_is_asynchronous() -> None:
    h = report.health(node("n3", REPLICA, SyncState("n1", ("n2",))), now=50.0)
    assert verdict("/sync", {}, h) == 503 and verdict("/async", {}, h) == 200


def test_sync_key_of_a_former_leader_does_not_make_a_sync_standby() -> None:
    h = report.health(node("n2", REPLICA, SyncState("n9", ("n2",))), now=50.0)
    assert not h.sync_standby


def test_lag_is_replay_lag_behind_the_last_primary_position() -> None:
    assert report.lag(node("n2", REPLICA)) == 200
    assert report.lag(node("n1", PRIMARY)) == 0


def test_busy_node_is_never_a_writable_primary_even_before_postgres_is_observed_again() -> None:
    leader = node("n1", PRIMARY)
    assert verdict("/primary", {}, report.health(leader, now=50.0)) == 200
    stopping = replace(leader, busy=Busy(Job.DEMOTING, "lease about to expire"))
    assert verdict("/primary", {}, report.health(stopping, now=50.0)) == 503
    assert report.member(stopping).state == "demoting"


def test_lease_within_retry_timeout_of_expiry_is_not_held() -> None:
    leader = node("n1", PRIMARY, dcs_seen_at=97.0)  # renewed at 97: valid until 100
    assert report.holds_leader(leader, now=97.9)
    assert not report.holds_leader(leader, now=98.0)


def test_lease_is_not_held_once_renewals_failed_for_retry_timeout() -> None:
    leader = node("n1", PRIMARY, dcs_seen_at=94.0)  # the renewal due at 95 never came
    assert report.holds_leader(leader, now=96.9)
    assert not report.holds_leader(leader, now=97.0)


def test_hand_over_steps_show_in_the_member_state() -> None:
    r = node("n1", PRIMARY, busy=Busy(Job.HANDING_OVER, "checkpoint"))
    assert report.member(r).state == "switchover: checkpoint"


def test_status_names_role_lag_and_sync_standby() -> None:
    st = report.status(node("n2", REPLICA, SyncState("n1", ("n2",))), now=50.0, wall_now=1000.0)
    assert st["role"] == "replica" and st["lag"] == 200 and st["sync_standby"] is True
    assert st["synchronous_standbys"] == ["n2"] and st["dcs_last_seen"] == 1000


def test_leader_key_bound_to_an_earlier_lease_is_not_ours() -> None:
    restarted = node("n1", PRIMARY, lease_id=8)  # the key still carries lease 7 of the dead agent
    assert verdict("/primary", {}, report.health(restarted, now=50.0)) == 503


def test_replica_streaming_an_older_timeline_than_the_last_primarys_is_not_routed_reads() -> None:
    """A standby past the new timeline's fork streams the old timeline for a moment before
    Postgres refuses the new one: it holds commits the cluster lost."""
    on_old = node("n3", replace(REPLICA, timeline=1, lsn=1200, replayed_lsn=1200))
    assert verdict("/replica", {}, report.health(on_old, now=50.0)) == 503
    assert verdict("/read-only", {}, report.health(on_old, now=50.0)) == 503
    assert verdict("/replica", {}, report.health(node("n3", REPLICA), now=50.0)) == 200
    # found by CI: the new primary claims status on its old timeline before it promotes; the
    # history it writes right after says that timeline ended
    from pgha.core.cluster import HistoryEntry

    claimed = replace(on_old.view, status=LeaderStatus("n2", 1, 1000), history=(HistoryEntry(1, 1000, "failover", "t", "n2"),))
    assert verdict("/replica", {}, report.health(replace(on_old, view=claimed), now=50.0)) == 503
    assert verdict("/replica", {}, report.health(replace(on_old, view=replace(claimed, history=())), now=50.0)) == 200
