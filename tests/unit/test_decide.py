"""Each rule of the decision core, one scenario at a time."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.model import DynamicConfig, Tags
from pgha.core import actions as a
from pgha.core.cluster import ClusterView, LeaderStatus, Member, SyncState
from pgha.core.decide import decide
from pgha.core.snapshot import PgState, Snapshot

CFG = DynamicConfig(ttl=6, loop_wait=1, retry_timeout=2, maximum_lag_on_failover=1000, primary_start_timeout=30)
PRIMARY = PgState(data_dir_empty=False, sysid="42", running=True, in_recovery=False, timeline=3, lsn=5000,
                  replayed_lsn=5000, primary_on_timeline=3)
REPLICA = PgState(data_dir_empty=False, sysid="42", running=True, in_recovery=True, timeline=3, lsn=5000,
                  replayed_lsn=5000, streaming=True, following="n1", last_streaming_at=99.0)


def view(leader: str | None = "n1", status_lsn: int = 5000, **members: Member) -> ClusterView:
    return ClusterView(initialize="42", config=CFG, leader=leader, members=members,
                       status=LeaderStatus("n1", 3, status_lsn))


def snap(pg: PgState, cluster: ClusterView, name: str = "n2", **kw: object) -> Snapshot:
    base = dict(now=100.0, name=name, tags=Tags(), config=CFG, cluster=cluster, dcs_ok=True, pg=pg,
                lease_valid_until=106.0)
    base.update(kw)
    if "peers_asked_at" in kw and "peers_asked" not in kw:  # answers given: every other member was asked
        base["peers_asked"] = frozenset(cluster.members) - {name}
    return Snapshot(**base)  # type: ignore[arg-type]


def kinds(s: Snapshot) -> list[type]:
    return [type(x) for x in decide(s).actions]


def test_uninitialized_cluster_races_for_initialize() -> None:
    s = snap(PgState(), ClusterView())
    assert kinds(s) == [a.InitializeCluster]


def test_empty_data_dir_clones_from_the_leader() -> None:
    s = snap(PgState(), view(n1=Member("n1", role="primary")))
    assert decide(s).actions == (a.CloneFrom("n1"),)


def test_data_of_another_cluster_is_refused() -> None:
    d = decide(snap(replace(REPLICA, sysid="7"), view()))
    assert d.actions == () and "another cluster" in d.note


def test_leader_publishes_status_and_slots_for_the_others() -> None:
    s = snap(PRIMARY, view(n1=Member("n1"), n2=Member("n2"), n3=Member("n3")), name="n1")
    assert decide(s).actions == (a.PublishLeaderStatus(frozenset({"n2", "n3"}), retain=(("n2", 0.0), ("n3", 0.0))),)


def test_leader_demotes_when_lease_is_within_retry_timeout_of_expiry() -> None:
    s = snap(PRIMARY, view(), name="n1", lease_valid_until=101.9)
    assert kinds(s) == [a.Demote]


def test_primary_cut_off_from_etcd_keeps_running_while_lease_is_safe() -> None:
    s = snap(PRIMARY, view(), name="n1", dcs_ok=False, lease_valid_until=104.5)
    assert kinds(s) == []


def test_primary_cut_off_from_etcd_demotes_before_lease_expiry() -> None:
    s = snap(PRIMARY, view(), name="n1", dcs_ok=False, lease_valid_until=101.5)
    assert decide(s).actions[0] == a.Demote("immediate", reason="cannot reach etcd and the leader lease is about to expire")


def test_writable_node_demotes_when_another_holds_the_key() -> None:
    assert kinds(snap(PRIMARY, view(leader="n3"))) == [a.Demote]


def test_writable_node_without_any_leader_key_demotes() -> None:
    assert kinds(snap(PRIMARY, view(leader=None))) == [a.Demote]


def test_leader_postgres_down_is_restarted_in_place() -> None:
    pg = replace(PRIMARY, running=False, down_since=95.0)
    # the start may take what is left of primary_start_timeout (30 s, down for 5): the key is held meanwhile
    assert decide(snap(pg, view(), name="n1")).actions == (a.StartPostgres(primary=True, timeout=25.0),)
    assert decide(snap(replace(pg, primary_on_timeline=None), view(), name="n1")).actions == (
        a.StartPostgres(primary=False, timeout=25.0),)


def test_leader_postgres_down_beyond_primary_start_timeout_releases_the_key() -> None:
    pg = replace(PRIMARY, running=False, down_since=60.0)
    assert kinds(snap(pg, view(), name="n1")) == [a.ReleaseLeader]


def test_leader_whose_postgres_exits_while_starting_releases_the_key_at_once() -> None:
    # down for 5 s of a 30 s primary_start_timeout, and the start since then ended with an exit
    pg = replace(PRIMARY, running=False, down_since=95.0, start_failed_at=97.0)
    d = decide(snap(pg, view(), name="n1"))
    assert kinds(snap(pg, view(), name="n1")) == [a.ReleaseLeader] and "exited while starting" in d.note
    # a postmaster left alive by the failed start goes first, or it would open after the key is gone
    assert kinds(snap(replace(pg, postmaster_alive=True), view(), name="n1")) == [a.KillPostgres, a.ReleaseLeader]
    # a failure from before this outage does not count: this start is tried
    assert kinds(snap(replace(pg, start_failed_at=90.0), view(), name="n1")) == [a.StartPostgres]


def test_old_primary_returning_under_a_new_leader_is_rewound() -> None:
    pg = replace(PRIMARY, running=False, timeline=2, primary_on_timeline=2)
    assert decide(snap(pg, view(leader="n3"))).actions == (a.Rewind("n3", leader_timeline=0),)


def test_replica_follows_a_new_leader() -> None:
    assert decide(snap(REPLICA, view(leader="n3"))).actions == (a.FollowLeader("n3"),)


def test_new_leader_promotes_its_standby() -> None:
    assert kinds(snap(REPLICA, view(leader="n2"))) == [a.Promote]


def test_last_primary_holding_the_key_again_resumes_without_a_new_timeline() -> None:
    pg = replace(REPLICA, following=None, streaming=False, primary_on_timeline=3)
    assert kinds(snap(pg, view(leader="n1"), name="n1")) == [a.ResumeAsPrimary]


def test_healthy_replica_races_when_there_is_no_leader() -> None:
    assert kinds(snap(REPLICA, view(leader=None))) == [a.AcquireLeader]


def test_replica_beyond_maximum_lag_does_not_race() -> None:
    d = decide(snap(REPLICA, view(leader=None, status_lsn=7000)))
    assert d.actions == () and "maximum_lag_on_failover" in d.note


def test_nofailover_replica_does_not_race() -> None:
    d = decide(snap(REPLICA, view(leader=None), tags=Tags(nofailover=True)))
    assert d.actions == () and "nofailover" in d.note


def test_replica_that_stopped_streaming_long_ago_does_not_race_without_the_latest_wal() -> None:
    pg = replace(REPLICA, streaming=False, last_streaming_at=50.0, lsn=4900, replayed_lsn=4900)
    assert kinds(snap(pg, view(leader=None))) == []


def test_last_position_rewound_away_by_its_own_primary_does_not_block_failover_forever() -> None:
    # n1 published 5000 as primary, then rewound onto a leader that never promoted and is gone:
    # nobody can bring 5000 back, so the lag bound alone judges (a hypothesis-found stall).
    pg = replace(REPLICA, streaming=False, last_streaming_at=50.0, lsn=4900, replayed_lsn=4900)
    back = Member("n1", role="replica", state="running", lsn=4800, replayed_lsn=4800)
    assert kinds(snap(pg, view(leader=None, n1=back))) == [a.AcquireLeader]
    holder = Member("n3", role="replica", state="running", lsn=5000, replayed_lsn=5000)
    assert kinds(snap(pg, view(leader=None, n1=back, n3=holder))) == []  # n3 still holds it


def test_less_advanced_replica_lets_the_more_advanced_one_race_first() -> None:
    ahead = Member("n3", role="replica", state="streaming", lsn=5100, replayed_lsn=5100)
    s = snap(replace(REPLICA, lsn=5000), view(leader=None, n3=ahead), leader_lost_at=99.5)
    assert decide(s).actions == (a.AskPeers(("n3",)),)  # first: does its agent still run?
    s = replace(s, peers_asked_at=99.6, peers_asked=frozenset({"n3"}), peer_positions={"n3": 5100})
    assert kinds(s) == []
    # ... but not forever: after retry_timeout it races itself
    assert kinds(replace(s, now=102.0)) == [a.AcquireLeader]


def test_a_more_advanced_replica_whose_host_refuses_its_api_is_not_waited_for() -> None:
    # Killed with its node's primary: its record lives until its lease expires, its agent does not.
    ahead = Member("n3", role="replica", state="streaming", lsn=5100, replayed_lsn=5100)
    s = snap(replace(REPLICA, lsn=5000), view(leader=None, n3=ahead), leader_lost_at=99.5)
    asked = dict(peers_asked_at=99.6, peers_asked=frozenset({"n3"}))
    assert kinds(replace(s, **asked, peers_refused=frozenset({"n3"}))) == [a.AcquireLeader]
    assert kinds(replace(s, **asked)) == []  # no answer at all (SIGSTOP, a cut): it may still race
    # a refusal from before the leader was lost proves nothing about now
    assert decide(replace(s, peers_asked_at=99.0, peers_asked=frozenset({"n3"}),
                          peers_refused=frozenset({"n3"}))).actions == (a.AskPeers(("n3",)),)


def test_equal_replicas_break_ties_by_priority_then_name() -> None:
    peer = Member("n3", role="replica", state="streaming", lsn=5000, replayed_lsn=5000)
    assert kinds(snap(REPLICA, view(leader=None, n3=peer), leader_lost_at=100.0)) == [a.AcquireLeader]
    s = snap(REPLICA, view(leader=None, n3=peer), name="n4", leader_lost_at=100.0, peers_asked_at=100.0)
    assert kinds(s) == []
    high = replace(peer, tags={"failover_priority": 5})
    assert kinds(snap(REPLICA, view(leader=None, n3=high), leader_lost_at=100.0, peers_asked_at=100.0)) == []


def test_paused_cluster_takes_no_automatic_action() -> None:
    paused = DynamicConfig(**{**CFG.model_dump(), "pause": True})
    assert kinds(snap(REPLICA, view(leader=None), config=paused)) == []
    assert kinds(snap(replace(PRIMARY, running=False), view(), name="n1", config=paused)) == []


def test_shutdown_stops_postgres_then_exits() -> None:
    assert kinds(snap(PRIMARY, view(), name="n1", shutting_down=True)) == [a.StopPostgres, a.Exit]


def test_shutdown_in_maintenance_mode_leaves_postgres_running() -> None:
    paused = CFG.model_copy(update={"pause": True})
    assert kinds(snap(PRIMARY, view(), name="n1", shutting_down=True, config=paused)) == [a.Exit]


def test_decide_is_deterministic() -> None:
    s = snap(REPLICA, view(leader=None))
    assert decide(s) == decide(s)


# -- operator requests -------------------------------------------------------------------

from pgha.core.cluster import FailoverRequest  # noqa: E402

STREAMING_N2 = Member("n2", role="replica", state="streaming", lsn=5000, replayed_lsn=5000)


def test_leader_hands_over_to_a_healthy_switchover_candidate() -> None:
    v = replace(view(n2=STREAMING_N2), failover=FailoverRequest("n1", "n2"))
    assert decide(snap(PRIMARY, v, name="n1")).actions == (a.HandOver("n2"),)


def test_a_candidate_whose_record_outlives_it_is_not_handed_the_cluster_again() -> None:
    # n2's record says it streams from n1, but n1's pg_stat_replication has no n2: it died (here
    # between an earlier hand-over and its promotion; n1 took the key back)
    gone = replace(STREAMING_N2, following="n1")
    v = replace(view(n2=gone), failover=FailoverRequest("n1", "n2"))
    pg = replace(PRIMARY, replica_lsns={"n3": 5000})
    d = decide(snap(pg, v, name="n1", failover_seen_at=99.5))
    assert d.actions == () and "waiting for it to stream from n1" in d.note  # it may have just reconnected
    assert kinds(snap(pg, v, name="n1", failover_seen_at=90.0)) == [a.ClearFailover]
    assert decide(snap(replace(pg, replica_lsns={"n2": 5000}), v, name="n1")).actions == (a.HandOver("n2"),)


def test_leader_drops_a_switchover_to_an_unhealthy_candidate() -> None:
    lagging = replace(STREAMING_N2, lsn=1000)
    v = replace(view(n2=lagging), failover=FailoverRequest("n1", "n2"))
    assert kinds(snap(PRIMARY, v, name="n1")) == [a.ClearFailover]


def test_scheduled_switchover_waits_for_its_time() -> None:
    v = replace(view(n2=STREAMING_N2), failover=FailoverRequest("n1", "n2", scheduled_at=2000.0))
    assert kinds(snap(PRIMARY, v, name="n1", wall_now=1999.0)) == [a.PublishLeaderStatus]
    assert kinds(snap(PRIMARY, v, name="n1", wall_now=2000.0)) == [a.HandOver]


def test_candidate_waits_for_the_old_primarys_final_position_before_taking_over() -> None:
    v = replace(view(leader=None, status_lsn=5200), failover=FailoverRequest("n1", "n2"))
    behind = replace(REPLICA, streaming=False, lsn=5100, replayed_lsn=5100)
    assert kinds(snap(behind, v, leader_lost_at=100.0)) == []
    caught_up = replace(behind, lsn=5200, replayed_lsn=5200)
    assert kinds(snap(caught_up, v, leader_lost_at=100.0)) == [a.AcquireLeader]


def test_other_replicas_leave_the_key_to_the_switchover_candidate() -> None:
    v = replace(view(leader=None, n2=STREAMING_N2), failover=FailoverRequest("n1", "n2"))
    s = snap(REPLICA, v, name="n3", leader_lost_at=100.0)
    assert decide(s).actions == (a.AskPeers(("n2",)),)  # first: does the candidate's agent still run?
    assert kinds(replace(s, peers_asked_at=100.0, peers_asked=frozenset({"n2"}))) == []
    # a refusal (the candidate killed after the old primary stopped): no waiting out retry_timeout
    gone = replace(s, peers_asked_at=100.0, peers_asked=frozenset({"n2"}), peers_refused=frozenset({"n2"}))
    assert kinds(gone) == [a.AcquireLeader]


def test_new_leader_promotes_before_clearing_the_switchover_request() -> None:
    v = replace(view(leader="n2"), failover=FailoverRequest("n1", "n2"))
    assert kinds(snap(REPLICA, v)) == [a.Promote]
    assert kinds(snap(replace(PRIMARY, primary_on_timeline=4), v)) == [a.ClearFailover]


def test_requested_restart_and_reinit_are_honoured_even_when_paused() -> None:
    paused = DynamicConfig(**{**CFG.model_dump(), "pause": True})
    assert kinds(snap(REPLICA, view(), config=paused, restart_at=0.0, wall_now=5.0)) == [a.RestartPostgres]
    assert decide(snap(REPLICA, view(n1=Member("n1")), reinit_requested=True)).actions == (a.Reinitialize("n1"),)


# -- choices that used to hide in the executor --------------------------------------------

from pgha.core import lease, parameters  # noqa: E402
from pgha.core.jobs import Busy, Job  # noqa: E402


def test_only_a_node_without_data_bootstraps_a_cluster() -> None:
    assert decide(snap(PgState(), ClusterView())).actions == (a.InitializeCluster(run_initdb=True),)
    # a wiped key space: a node with data records its system identifier, a writable one first
    # demotes (the leader key went with the rest)
    for pg in (replace(PRIMARY, running=False), REPLICA):
        assert decide(snap(pg, ClusterView())).actions == (a.ClaimInitialize("42"),)
    assert kinds(snap(PRIMARY, ClusterView())) == [a.Demote]
    # ... also once another cluster took the key space
    assert kinds(snap(PRIMARY, ClusterView(initialize="7"))) == [a.Demote]
    # ... but not a bootstrap winner whose view still shows its own claim empty
    assert a.Demote not in kinds(snap(PRIMARY, ClusterView(initialize="")))


def test_an_empty_bootstrap_claim_is_reclaimed_after_three_ttls() -> None:
    claimed = ClusterView(initialize="", initialize_revision=9)
    assert kinds(snap(PgState(), claimed, initialize_empty_since=90.0)) == []
    assert decide(snap(PgState(), claimed, initialize_empty_since=81.0)).actions == (a.ReclaimInitialize(9),)
    # a primary left writable by a wipe stops writes before it lets others lead
    assert kinds(snap(PRIMARY, claimed, initialize_empty_since=81.0)) == [a.Demote]


def test_rewind_carries_the_leaders_timeline_and_whether_pg_rewind_may_be_used() -> None:
    pg = replace(PRIMARY, running=False, timeline=2, primary_on_timeline=2)
    leader = Member("n3", role="primary", timeline=4)
    assert decide(snap(pg, view(leader="n3", n3=leader))).actions == (a.Rewind("n3", leader_timeline=4),)
    no_rewind = CFG.model_copy(update={"postgresql": CFG.postgresql.model_copy(update={"use_pg_rewind": False})})
    act = decide(snap(pg, view(leader="n3", n3=leader), config=no_rewind)).actions[0]
    assert isinstance(act, a.Rewind) and act.use_pg_rewind is False


def test_switchover_without_a_named_candidate_names_the_chosen_one_before_handing_over() -> None:
    v = replace(view(n2=STREAMING_N2), failover=FailoverRequest("n1", ""))
    assert decide(snap(PRIMARY, v, name="n1")).actions == (a.NameSwitchoverCandidate("n2"), a.HandOver("n2"))


def test_requested_restart_keeps_the_role_postgres_has_now() -> None:
    assert decide(snap(PRIMARY, view(), name="n1", restart_at=0.0)).actions == (a.RestartPostgres(primary=True),)
    assert decide(snap(REPLICA, view(), restart_at=0.0)).actions == (a.RestartPostgres(primary=False, follow="n1"),)


def test_changed_parameters_are_reloaded_once_nothing_else_replaces_postgres() -> None:
    old = parameters.wanted(CFG, None)
    changed = CFG.model_copy(update={"postgresql": CFG.postgresql.model_copy(update={"parameters": {"work_mem": "8MB"}})})
    leader_view = replace(view(n1=Member("n1"), n2=Member("n2")), config=changed)
    d = decide(snap(PRIMARY, leader_view, name="n1", config=changed, applied_parameters=old))
    assert [type(x) for x in d.actions] == [a.PublishLeaderStatus, a.ReloadConfig]
    # not while a job runs, not when the decision stops Postgres anyway, not when nothing changed
    busy = Busy(Job.CLONING, "from n1")
    assert kinds(snap(PRIMARY, leader_view, name="n1", config=changed, applied_parameters=old, busy=busy)) == []
    assert kinds(snap(PRIMARY, view(leader="n3"), config=changed, applied_parameters=old)) == [a.Demote]
    same = parameters.wanted(changed, None)
    assert kinds(snap(PRIMARY, leader_view, name="n1", config=changed, applied_parameters=same)) == [
        a.PublishLeaderStatus]


def test_operator_reload_request_reloads_postgres() -> None:
    assert decide(snap(REPLICA, view(), reload_requested=True)).actions == (a.ReloadConfig("requested by an operator"),)


def test_guard_fires_only_for_a_writable_leader_past_half_the_demotion_margin() -> None:
    # lease valid until 106, retry_timeout 2: the loop demotes from 104 on, the guard from 105
    assert not lease.guard_due(106.0, 104.9, CFG, leader=True, writable=True)
    assert lease.guard_due(106.0, 105.0, CFG, leader=True, writable=True)
    assert not lease.guard_due(106.0, 105.5, CFG, leader=False, writable=True)
    assert not lease.guard_due(106.0, 105.5, CFG, leader=True, writable=False)
    assert not lease.guard_due(None, 105.5, CFG, leader=True, writable=True)


def test_keepalive_of_a_leader_never_outlasts_its_demotion_margin() -> None:
    assert lease.keepalive_deadline(106.0, 100.0, CFG, leader=True) == 2.0
    assert lease.keepalive_deadline(106.0, 103.5, CFG, leader=True) == 0.5
    assert lease.keepalive_deadline(106.0, 103.9, CFG, leader=True) == 0.2
    assert lease.keepalive_deadline(106.0, 103.9, CFG, leader=False) == 2.0


# -- the fence ------------------------------------------------------------------------------


def test_fence_is_wanted_while_postgres_takes_writes_or_is_about_to_but_never_when_paused() -> None:
    assert lease.fence_wanted(writable=True, paused=False, actions=())
    assert not lease.fence_wanted(writable=False, paused=False, actions=(a.FollowLeader("n1"),))
    for act in (a.Promote(), a.ResumeAsPrimary(), a.StartPostgres(primary=True), a.RestartPostgres(primary=True),
                a.InitializeCluster()):
        assert lease.fence_wanted(writable=False, paused=False, actions=(act,)), act
    assert not lease.fence_wanted(writable=False, paused=False, actions=(a.StartPostgres(primary=False),))
    assert not lease.fence_wanted(writable=True, paused=True, actions=(a.Promote(),))


def test_an_armed_fence_stays_armed_while_a_job_runs_though_postgres_takes_no_writes_yet() -> None:
    # the bootstrap, restart or resume job makes Postgres writable between two looks
    assert lease.fence_wanted(writable=False, paused=False, actions=(), busy=True, armed=True)
    assert not lease.fence_wanted(writable=False, paused=False, actions=(), busy=True, armed=False)
    assert not lease.fence_wanted(writable=False, paused=False, actions=(), busy=False, armed=True)
    assert not lease.fence_wanted(writable=False, paused=True, actions=(), busy=True, armed=True)


def test_fence_deadline_is_half_the_demotion_margin_before_the_lease_can_expire() -> None:
    assert lease.fence_deadline(106.0, 100.0, CFG) == 105.0
    assert lease.fence_deadline(None, 100.0, CFG) == 100.0  # no lease: no writes


def test_primary_whose_fence_cannot_be_armed_demotes() -> None:
    d = decide(snap(PRIMARY, view(), name="n1", fence_ok=False))
    assert [type(x) for x in d.actions] == [a.Demote] and "fence" in d.note
    paused = DynamicConfig(**{**CFG.model_dump(), "pause": True})
    assert kinds(snap(PRIMARY, view(), name="n1", fence_ok=False, config=paused)) == [a.PublishLeaderStatus]


# -- the lease, demotion first, lossless switchover -------------------------------------------

from pgha.postgres import conf  # noqa: E402


def test_cut_off_primary_stops_counting_on_its_lease_retry_timeout_after_a_renewal_failed() -> None:
    # ttl 6, loop_wait 1, retry_timeout 2: renewed at 100, the next renewal was due at 101
    assert lease.holds(106.0, 102.9, CFG, renewed_at=100.0)
    assert not lease.holds(106.0, 103.0, CFG, renewed_at=100.0)
    s = snap(PRIMARY, view(), name="n1", dcs_ok=False, lease_valid_until=106.0, lease_renewed_at=100.0, now=103.0)
    assert kinds(s) == [a.Demote]
    # a long-ttl cluster demotes as early: ttl 20 / loop_wait 2 / retry_timeout 3
    long = DynamicConfig(ttl=20, loop_wait=2, retry_timeout=3)
    assert lease.held_until(120.0, 100.0, long) == 105.0


def test_renewals_are_retried_quickly_after_a_failure() -> None:
    assert lease.retry_pause(CFG, ok=True) == 1.0
    assert lease.retry_pause(DynamicConfig(), ok=False) == 0.5


def test_guard_never_fires_in_maintenance_mode() -> None:
    assert lease.guard_due(106.0, 105.5, CFG, leader=True, writable=True)
    assert not lease.guard_due(106.0, 105.5, CFG, leader=True, writable=True, paused=True)


def test_due_demotion_goes_before_a_requested_restart() -> None:
    d = decide(snap(PRIMARY, view(leader="n3"), restart_at=0.0, wall_now=5.0))
    assert [type(x) for x in d.actions] == [a.Demote]
    d = decide(snap(PRIMARY, view(), name="n1", lease_valid_until=101.5, restart_at=0.0, wall_now=5.0))
    assert [type(x) for x in d.actions] == [a.Demote]


def test_pg_rewind_syncs_the_rewound_directory() -> None:
    argv = conf.rewind_argv("/bin/pg_rewind", "/data", "host=x")
    assert "--no-sync" not in argv and argv[:3] == ["/bin/pg_rewind", "-D", "/data"]


def test_switchover_candidate_never_promotes_short_of_a_living_old_leaders_final_position() -> None:
    old_leader = Member("n1", role="replica", state="running", lsn=5200)
    v = replace(view(leader=None, status_lsn=5200, n1=old_leader), failover=FailoverRequest("n1", "n2"))
    behind = replace(REPLICA, streaming=False, lsn=5100, replayed_lsn=5100)
    # long after retry_timeout: still waiting while n1 lives
    assert kinds(snap(behind, v, leader_lost_at=10.0)) == []
    # other replicas that lack the final position do not race either
    assert kinds(snap(behind, v, name="n3", leader_lost_at=10.0)) == []
    # once the old leader's lease ran out (its record is gone) it is an ordinary failover
    gone = replace(v, members={})
    assert kinds(snap(behind, gone, leader_lost_at=10.0)) == [a.AcquireLeader]


def test_restarted_agent_takes_its_leader_key_over_onto_its_new_lease() -> None:
    v = replace(view(), leader_lease=7, leader_revision=42)
    d = decide(snap(PRIMARY, v, name="n1", lease_id=8))
    assert d.actions == (a.TakeOverLeaderKey(7, 42),)
    assert not snap(PRIMARY, v, name="n1", lease_id=8).is_leader()
    assert snap(PRIMARY, v, name="n1", lease_id=7).is_leader()
    # without a safe lease of its own it does not touch the key, and demotes
    assert kinds(snap(PRIMARY, v, name="n1", lease_id=8, lease_valid_until=101.0)) == [a.Demote]


def test_a_leader_key_on_a_lease_this_agent_never_held_is_a_namesakes_and_never_taken() -> None:
    v = replace(view(), leader_lease=7, leader_revision=42, member_leases={"n1": 7})
    # the run before this one held lease 7 (remembered on disk): its key is taken over
    assert decide(snap(PRIMARY, v, name="n1", lease_id=8, own_leases=frozenset({7, 8}),
                       started_at=99.0)).actions == (a.TakeOverLeaderKey(7, 42),)
    # lease 7 was never ours: another agent named n1 leads; this one writes nothing and waits
    newcomer = snap(REPLICA, v, name="n1", lease_id=8, own_leases=frozenset({8}), started_at=99.0)
    d = decide(newcomer)
    assert d.actions == () and "never ours" in d.note
    # ... longer than any earlier run's lease could live: a live namesake, and this agent stops
    d = decide(replace(newcomer, now=99.0 + CFG.ttl + CFG.loop_wait + 1))
    assert d.actions == (a.Exit(),) and "two nodes share a name" in d.note
    # a writable newcomer stops its Postgres too
    assert kinds(replace(newcomer, pg=PRIMARY, now=200.0)) == [a.StopPostgres, a.Exit]
    # a record that describes our own Postgres (Patroni's before a migration: only conn_url) is an
    # earlier agent of this node: its key is taken over at once, as before
    patroni = replace(v, members={"n1": Member("n1", conn_url="postgres://10.0.0.1:5432/postgres")})
    assert decide(snap(PRIMARY, patroni, name="n1", lease_id=8, own_leases=frozenset({8}), started_at=99.0,
                       address=("10.0.0.1", 5432))).actions == (a.TakeOverLeaderKey(7, 42),)
    # the same record seen from another host is a namesake's
    assert decide(snap(PRIMARY, patroni, name="n1", lease_id=8, own_leases=frozenset({8}), started_at=99.0,
                       address=("10.0.0.2", 5432))).actions == ()
    # the leader whose record a newcomer overwrote keeps leading (the newcomer stops on its side)
    mine = replace(v, leader_lease=8, member_leases={"n1": 9})
    assert a.Exit not in kinds(snap(PRIMARY, mine, name="n1", lease_id=8, own_leases=frozenset({8}), started_at=0.0))


def test_quorum_standby_that_flushed_but_has_not_replayed_is_promoted_not_the_one_behind_it() -> None:
    # ANY 1 (n2, n3): n3 paused replay but flushed every commit; n2 was cut off 2 s earlier
    quorum = DynamicConfig(**{**CFG.model_dump(), "synchronous_mode": "quorum", "synchronous_mode_strict": True})
    n2 = Member("n2", role="replica", state="streaming", lsn=5000, replayed_lsn=5000)
    n3 = Member("n3", role="replica", state="streaming", lsn=5500, replayed_lsn=1000)
    v = replace(view(leader=None, status_lsn=5500, n2=n2, n3=n3), config=quorum,
                sync=SyncState("n1", ("n2", "n3"), 1))
    as_n2 = replace(REPLICA, lsn=5000, replayed_lsn=5000, streaming=False)
    as_n3 = replace(REPLICA, lsn=5500, replayed_lsn=1000, streaming=False)
    # n2 never takes over, however long it waits
    assert kinds(snap(as_n2, v, config=quorum, leader_lost_at=0.0)) == []
    # n3 may: its received position counts, not its replayed one; it asks the others first ...
    assert decide(snap(as_n3, v, name="n3", config=quorum, leader_lost_at=99.0)).actions == (a.AskPeers(("n2",)),)
    answered = dict(config=quorum, leader_lost_at=99.0, peers_asked_at=99.5)
    assert kinds(snap(as_n3, v, name="n3", peer_positions={"n2": 5000}, **answered)) == [a.AcquireLeader]
    # ... and a live answer beats a stale record: n2's record says 5000, n2 says it has 6000
    assert kinds(snap(as_n3, v, name="n3", peer_positions={"n2": 6000}, **answered)) == []
    # without enough answers nothing is proven (ANY 1 of 2: both must answer)
    assert kinds(snap(as_n3, v, name="n3", peer_positions={}, **answered)) == []
    # answers asked before the leader was lost prove nothing
    stale = dict(config=quorum, leader_lost_at=99.0, peers_asked_at=98.0, peer_positions={"n2": 5000})
    assert kinds(snap(as_n3, v, name="n3", **stale)) == [a.AskPeers]


def test_replica_that_received_past_the_new_timelines_fork_is_rewound() -> None:
    from pgha.core.cluster import HistoryEntry

    leader = Member("n3", role="primary", timeline=4)
    v = replace(view(leader="n3", n3=leader), history=(HistoryEntry(3, 4800, "failover", "t", "n3"),))
    forked = replace(REPLICA, following="n3", streaming=False, lsn=5000)  # timeline 3, past 4800
    assert decide(snap(forked, v)).actions == (a.Rewind("n3", leader_timeline=4),)
    behind = replace(forked, lsn=4700)  # follows the timeline switch by itself
    assert kinds(snap(behind, v)) == []
    streaming = replace(forked, streaming=True)
    assert kinds(snap(streaming, v)) == []


def test_replica_that_pg_rewind_found_following_is_not_rewound_again_until_it_stalls() -> None:
    # the recorded end (4800) is a loop older than the real fork; pg_rewind said "no rewind
    # required" and the replica has not streamed yet: no second rewind (it looped, a lossy link)
    from pgha.core.cluster import HistoryEntry

    leader = Member("n3", role="primary", timeline=4)
    v = replace(view(leader="n3", n3=leader), history=(HistoryEntry(3, 4800, "failover", "t", "n3"),))
    checked = replace(REPLICA, following="n3", streaming=False, lsn=5000, rewound_onto=4)
    assert kinds(snap(checked, v)) == []
    assert decide(snap(replace(checked, stalled_since=93.0), v)).actions == (a.Rewind("n3", leader_timeline=4),)
    # a newer leader timeline is a new fork: judged again
    newer = replace(view(leader="n3", n3=replace(leader, timeline=5)),
                    history=(HistoryEntry(3, 4800, "failover", "t", "n3"), HistoryEntry(4, 9000, "failover", "t", "n3")))
    assert kinds(snap(checked, newer)) == [a.Rewind]


def test_demoted_old_primary_whose_wal_ends_before_the_fork_follows_and_postgres_checks() -> None:
    # Patroni's check: n2 led timeline 3 and was demoted (cut from etcd); n3 promoted at 4800 from
    # WAL n2 had shipped. Its WAL, replayed to its end as a standby, stops at 4800: no rewind, it
    # follows n3 and Postgres itself refuses the timeline if that is wrong (then it stalls)
    from pgha.core.cluster import HistoryEntry

    v = replace(view(leader="n3", n3=Member("n3", role="primary", timeline=4)),
                history=(HistoryEntry(3, 4800, "failover", "t", "n3"),))
    demoted = replace(REPLICA, following=None, streaming=False, lsn=4800, replayed_lsn=4800, primary_on_timeline=3)
    assert decide(snap(demoted, v)).actions == (a.FollowLeader("n3"),)
    following = replace(demoted, following="n3")
    assert kinds(snap(following, v)) == [] and decide(snap(following, v)).recheck == 0.2  # it switches within ms
    # Postgres went onto timeline 4: it accepted the fork as at or after its replay point
    d = decide(snap(replace(following, streaming=True, timeline=4, lsn=5100), v))
    assert [type(x) for x in d.actions] == [a.ClearDivergence] and "without a rewind" in d.note
    # a single record past the fork, or no recorded fork: rewound at once, as before
    assert decide(snap(replace(demoted, lsn=4801), v)).actions == (a.Rewind("n3", leader_timeline=4),)
    assert kinds(snap(demoted, replace(v, history=()))) == [a.Rewind]
    # refused (stalled a ttl on timeline 3): rewound
    assert kinds(snap(replace(following, stalled_since=93.0), v)) == [a.Rewind]
    # streaming the old timeline up to the fork is no proof yet
    assert kinds(snap(replace(following, streaming=True, lsn=4700), v)) == []


def test_stopped_old_primary_starts_read_only_to_see_where_its_wal_ends_before_any_rewind() -> None:
    # n2 led timeline 3; its Postgres was killed (or fenced) and n3 promoted at 4800. A stopped
    # directory does not show where its WAL ends: it starts as n3's replica (crash recovery
    # replays all of it first), and the rule above decides on what Postgres then reports
    from pgha.core.cluster import HistoryEntry

    v = replace(view(leader="n3", n3=Member("n3", role="primary", timeline=4)),
                history=(HistoryEntry(3, 4800, "failover", "t", "n3"),))
    stopped = PgState(data_dir_empty=False, timeline=3, primary_on_timeline=3, down_since=95.0)
    assert decide(snap(stopped, v)).actions == (a.StartPostgres(primary=False, follow="n3"),)
    up = replace(REPLICA, following="n3", streaming=False, timeline=3, primary_on_timeline=3)
    assert decide(snap(replace(up, lsn=4801, replayed_lsn=4801), v)).actions == (a.Rewind("n3", leader_timeline=4),)
    assert kinds(snap(replace(up, lsn=4800, replayed_lsn=4800), v)) == []  # Postgres tries n3's timeline
    # no recorded end of timeline 3, or a start that already failed since it went down: pg_rewind
    assert kinds(snap(stopped, replace(v, history=()))) == [a.Rewind]
    assert kinds(snap(replace(stopped, start_failed_at=96.0), v)) == [a.Rewind]
    # a failure before this stop does not count
    assert kinds(snap(replace(stopped, start_failed_at=90.0), v)) == [a.StartPostgres]


def test_replica_not_yet_streaming_from_its_leader_looks_again_within_a_second() -> None:
    starting = replace(REPLICA, streaming=False, last_streaming_at=None)
    assert decide(snap(starting, view())).recheck == 1.0
    assert decide(snap(REPLICA, view())).recheck is None
    # streamed a moment ago (re-pointed at a new primary, or restarted): look again within 0.2 s
    blip = replace(REPLICA, streaming=False, last_streaming_at=99.0)
    assert decide(snap(blip, view())).recheck == 0.2


# -- found by the simulation (tests/unit/sim.py) ---------------------------------------------------


def test_standby_stalled_a_whole_ttl_behind_an_unrecorded_fork_is_rewound() -> None:
    # the history does not say where timeline 3 ended (wiped): wait a ttl, then let pg_rewind look
    leader = Member("n3", role="primary", timeline=4)
    v = view(leader="n3", n3=leader)
    stalled = replace(REPLICA, following="n3", streaming=False, stalled_since=97.0)
    assert kinds(snap(stalled, v)) == []
    assert decide(snap(replace(stalled, stalled_since=93.0), v)).actions == (a.Rewind("n3", leader_timeline=4),)


def test_standby_past_the_earliest_of_two_ends_of_its_timeline_is_rewound() -> None:
    from pgha.core.cluster import HistoryEntry

    # timeline 3 ended twice: at 5200 (a branch that died) and at 4800 (the leader's)
    ends = (HistoryEntry(3, 5200, "failover", "t", "n4"), HistoryEntry(3, 4800, "failover", "t", "n3"))
    v = replace(view(leader="n3", n3=Member("n3", role="primary", timeline=5)), history=ends)
    forked = replace(REPLICA, following="n3", streaming=False, lsn=5000)
    assert kinds(snap(forked, v)) == [a.Rewind]


def test_leader_key_taken_as_a_standby_starts_read_only_after_a_crash_and_promotes() -> None:
    # we led timeline 3 once, another node promoted to 4 since; we hold the key again, Postgres down
    pg = replace(PRIMARY, running=False, in_recovery=True, down_since=99.0)
    v = replace(view(leader="n1"), status=LeaderStatus("n4", 4, 6000))
    assert decide(snap(pg, v, name="n1")).actions == (a.StartPostgres(primary=False, timeout=29.0),)
    assert kinds(snap(replace(pg, running=True), v, name="n1")) == [a.Promote]


def _synchronous(strict: bool) -> DynamicConfig:
    return DynamicConfig(**{**CFG.model_dump(), "synchronous_mode": "on", "synchronous_mode_strict": strict})


def test_after_a_wipe_in_synchronous_mode_the_most_advanced_member_that_answers_takes_over() -> None:
    strict = _synchronous(True)
    # nothing recorded: no sync key, no status (etcdctl del --prefix)
    members = dict(n2=Member("n2", role="replica", state="running", lsn=5000),
                   n3=Member("n3", role="replica", state="running", lsn=4000))
    wiped = ClusterView(initialize="42", config=strict, members=members)
    behind = replace(REPLICA, lsn=4000, replayed_lsn=4000, streaming=False)
    assert kinds(snap(behind, wiped, name="n3", config=strict, leader_lost_at=0.0)) == []
    ahead = replace(REPLICA, streaming=False)
    lost = dict(config=strict, leader_lost_at=99.0)
    assert decide(snap(ahead, wiped, **lost)).actions == (a.AskPeers(("n3",)),)
    assert kinds(snap(ahead, wiped, peers_asked_at=99.5, peer_positions={"n3": 4000}, **lost)) == [a.AcquireLeader]
    assert kinds(snap(ahead, wiped, peers_asked_at=99.5, peer_positions={"n3": 5100}, **lost)) == []


def test_after_a_wipe_a_member_behind_a_nofailover_one_streams_the_rest_from_it_then_takes_over() -> None:
    strict = _synchronous(True)
    members = dict(n2=Member("n2", role="replica", state="running", lsn=5000),
                   n3=Member("n3", role="replica", state="running", lsn=5100, tags={"nofailover": True}))
    wiped = ClusterView(initialize="42", config=strict, members=members)
    n2 = replace(REPLICA, streaming=False)
    lost = dict(config=strict, leader_lost_at=99.0, peers_asked_at=99.5, peer_positions={"n3": 5100})
    # n3 holds more but may never take over: waiting for it would wait forever
    d = decide(snap(n2, wiped, **lost))
    assert d.actions == (a.FollowLeader("n3", slot=False),) and "streaming the rest" in d.note
    assert kinds(snap(replace(n2, following="n3", streaming=True), wiped, **lost)) == []
    caught_up = replace(n2, following="n3", streaming=True, lsn=5100)
    assert kinds(snap(caught_up, wiped, **lost)) == [a.AcquireLeader]
    # a promotable member ahead takes over itself: nobody follows it
    promotable = replace(wiped, members={**members, "n3": replace(members["n3"], tags={})})
    assert kinds(snap(n2, promotable, **lost)) == []


def test_a_sync_key_older_than_the_last_promotion_names_nobody() -> None:
    strict = _synchronous(True)
    # n3 promoted (it claimed status) but died before writing its own sync key: the key still
    # says what n1 acknowledged, nothing about n3's commits
    old_key = SyncState("n1", ("n2",), 1)
    v = replace(view(leader=None, n2=Member("n2", role="replica", state="running", lsn=5000)),
                config=strict, sync=old_key, status=LeaderStatus("n3", 4, 5000))
    assert kinds(snap(replace(REPLICA, streaming=False), v, config=strict, leader_lost_at=0.0)) == []
    assert kinds(snap(replace(REPLICA, streaming=False), v, name="n1", config=strict, leader_lost_at=0.0)) == []
    assert kinds(snap(replace(REPLICA, streaming=False), v, name="n3", config=strict, leader_lost_at=0.0)) == [
        a.AcquireLeader]


def test_leader_asks_the_poolers_to_pause_before_handing_over() -> None:
    from pgha.core.poolers import Handover, PoolerRecord

    v = replace(view(n2=STREAMING_N2), failover=FailoverRequest("n1", "n2"), poolers={"b1": PoolerRecord("b1")})
    assert decide(snap(PRIMARY, v, name="n1", wall_now=100.0)).actions == (a.AnnounceHandover("n2"),)
    announced = replace(v, handover=Handover("n1", "n2", 100.0, 42))
    waiting = decide(snap(PRIMARY, announced, name="n1", wall_now=101.0))
    assert waiting.actions == () and "waiting for pooler(s) b1" in waiting.note
    acked = replace(announced, poolers={"b1": PoolerRecord("b1", "paused", "n1", 42)})
    assert decide(snap(PRIMARY, acked, name="n1", wall_now=101.0)).actions == (a.HandOver("n2"),)
    late = decide(snap(PRIMARY, announced, name="n1", wall_now=106.0))
    assert late.actions == (a.HandOver("n2"),) and "did not pause within 5 s" in late.note


def test_leader_cancels_the_transactions_holding_the_poolers_past_the_bound_then_hands_over() -> None:
    # a client's long transaction keeps its pooler from pausing: past the bound its statement is
    # cancelled (an error, the connection kept) rather than its connection cut by the stop
    from pgha.core.poolers import CUT_GRACE, Handover, PoolerRecord

    v = replace(view(n2=STREAMING_N2), failover=FailoverRequest("n1", "n2"), poolers={"b1": PoolerRecord("b1")},
                handover=Handover("n1", "n2", 100.0, 42))
    assert [type(x) for x in decide(snap(PRIMARY, v, name="n1", wall_now=104.9)).actions] == []
    cut = decide(snap(PRIMARY, v, name="n1", wall_now=105.0))
    assert [type(x) for x in cut.actions] == [a.CancelTransactions] and "still pausing after 5 s" in cut.note
    assert cut.recheck is not None and cut.recheck <= 0.1
    acked = replace(v, poolers={"b1": PoolerRecord("b1", "paused", "n1", 42)})
    assert decide(snap(PRIMARY, acked, name="n1", wall_now=105.1)).actions == (a.HandOver("n2"),)
    late = decide(snap(PRIMARY, v, name="n1", wall_now=105.0 + CUT_GRACE))
    assert late.actions == (a.HandOver("n2"),)


def test_a_leader_that_took_the_key_back_from_a_killed_candidate_drops_the_request_at_once() -> None:
    # No hand-over record: the candidate died after the key went, and this old primary took it back
    # on its refusal. Waiting retry_timeout for it to stream would hold strict mode's commits.
    n2 = replace(STREAMING_N2, following="n1")
    v = replace(view(n2=n2), failover=FailoverRequest("n1", "n2"))
    s = snap(PRIMARY, v, name="n1", failover_seen_at=99.0)
    assert kinds(s) == [] and "waiting for it to stream" in decide(s).note  # it may be reconnecting
    gone = decide(replace(s, peers_asked_at=99.5, peers_asked=frozenset({"n2"}), peers_refused=frozenset({"n2"})))
    assert [type(x) for x in gone.actions] == [a.ClearFailover] and "no longer streams from n1" in gone.note


def test_leader_gives_up_a_switchover_whose_candidate_stopped_streaming_from_it() -> None:
    # n2's record (bound to its lease) still says streaming; the leader's own replication view
    # says its walreceiver is gone: it died while the poolers paused
    from pgha.core.poolers import Handover, PoolerRecord

    n2 = replace(STREAMING_N2, following="n1")
    v = replace(view(n2=n2), failover=FailoverRequest("n1", "n2"), handover=Handover("n1", "n2", 100.0, 42),
                poolers={"b1": PoolerRecord("b1", "paused", "n1", 42)})
    gone = decide(snap(PRIMARY, v, name="n1"))
    assert [type(x) for x in gone.actions] == [a.ClearFailover] and "no longer streams from n1" in gone.note
    alive = replace(PRIMARY, replica_lsns={"n2": 5000})
    assert decide(snap(alive, v, name="n1")).actions == (a.HandOver("n2"),)
    cascading = replace(v, members={**v.members, "n2": replace(n2, following="n3")})
    assert decide(snap(PRIMARY, cascading, name="n1")).actions == (a.HandOver("n2"),)


def test_switchover_waits_for_a_candidate_far_behind_on_replay_before_pausing_anyone() -> None:
    from pgha.core.handover import REPLAY_SLACK, REPLAY_WAIT

    far = replace(STREAMING_N2, replayed_lsn=0)  # received everything, replayed little
    pg = replace(PRIMARY, lsn=REPLAY_SLACK + 5000, replica_lsns={"n2": REPLAY_SLACK + 5000})
    v = replace(view(n2=replace(far, lsn=REPLAY_SLACK + 5000)), failover=FailoverRequest("n1", "n2"))
    waiting = decide(snap(pg, v, name="n1", failover_seen_at=99.0))
    assert waiting.actions == () and "waiting for it to replay" in waiting.note
    late = decide(snap(pg, v, name="n1", failover_seen_at=100.0 - REPLAY_WAIT - 1))
    assert late.actions == (a.HandOver("n2"),)


def test_the_synchronous_standby_does_not_wait_for_an_async_replica_that_received_more() -> None:
    # Found by bench/matrix.py (primary agent SIGSTOPped, sync): the asynchronous n3 had received
    # more WAL than the synchronous standby n2; n2 let "the more advanced" n3 take over while n3,
    # not a synchronous standby, refused. Nobody raced until retry_timeout had passed, and the
    # old primary's agent, thawed meanwhile, took its key back.
    strict = _synchronous(True)
    members = dict(n2=Member("n2", role="replica", state="running", lsn=5000),
                   n3=Member("n3", role="replica", state="running", lsn=5100))
    v = replace(view(leader=None, **members), config=strict, sync=SyncState("n1", ("n2",), 1))
    lost = dict(config=strict, leader_lost_at=99.5)
    assert kinds(snap(replace(REPLICA, streaming=False), v, **lost)) == [a.AcquireLeader]
    d = decide(snap(replace(REPLICA, lsn=5100, replayed_lsn=5100, streaming=False), v, name="n3", **lost))
    assert d.actions == () and "not a synchronous standby" in d.note
