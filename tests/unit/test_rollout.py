"""The rolling restart's steps, one scenario at a time: the leader coordinates, the member whose
turn it is restarts itself, the read path and the synchronous set leave it first."""

from __future__ import annotations

from dataclasses import replace

from pgha.config.model import DynamicConfig
from pgha.core import actions as a
from pgha.core import rolling
from pgha.core.cluster import ClusterView, Member, SyncState
from pgha.core.decide import decide
from pgha.core.health import NodeHealth, verdict
from pgha.core.requests import check_rollout
from pgha.core.rollout import DONE, DRAINING, FAILED, RESTARTING, SKIPPED, SWITCHING, Rollout
from pgha.postgres.installed import parse_version, restart_reason
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view

NOW = 1000.0
N1 = Member("n1", role="primary", state="running", lsn=5000, started_at=500.0)
N2 = Member("n2", role="replica", state="streaming", lsn=5000, started_at=500.0, sessions=3, following="n1")
N3 = Member("n3", role="replica", state="streaming", lsn=5000, started_at=500.0, sessions=0, following="n1")
LIVE = replace(PRIMARY, replica_lsns={"n2": 5000, "n3": 5000})


def rolled(r: Rollout, **members: Member) -> ClusterView:
    return replace(view(**{"n1": N1, "n2": N2, "n3": N3, **members}), rollout=r)


def lead(v: ClusterView, pg: object = LIVE) -> a.Decision:
    return decide(snap(pg, v, name="n1", wall_now=NOW))  # type: ignore[arg-type]


def written(d: a.Decision) -> Rollout:
    (w,) = [x for x in d.actions if isinstance(x, a.WriteRollout)]
    return w.record


START = Rollout(members=("n2", "n3", "n1"), started=NOW - 5)


def test_replicas_restart_first_one_at_a_time_each_drained_before() -> None:
    r = written(lead(rolled(START)))
    assert r.current == "n2" and r.phase("n2") == DRAINING and r.phase("n3") == "waiting" and r.since == NOW


def test_a_drained_replica_restarts_once_its_sessions_end_or_the_drain_bound_passes() -> None:
    draining = replace(START, current="n2", phases={"n2": DRAINING}, since=NOW - 2.5)
    assert not any(isinstance(x, a.WriteRollout) for x in lead(rolled(draining)).actions)  # 3 sessions left
    assert written(lead(rolled(draining, n2=replace(N2, sessions=0)))).phase("n2") == RESTARTING
    # a record from before the drain (within loop_wait + 1 s) says nothing about its sessions now
    young = replace(draining, since=NOW - 1)
    assert not any(isinstance(x, a.WriteRollout) for x in lead(rolled(young, n2=replace(N2, sessions=0))).actions)
    late = replace(draining, since=NOW - 11)
    assert written(lead(rolled(late))).phase("n2") == RESTARTING


def test_the_member_restarts_itself_when_its_turn_comes_and_only_once() -> None:
    turn = replace(START, current="n2", phases={"n2": RESTARTING}, since=NOW - 1)
    pg = replace(REPLICA, started_at=500.0)
    assert decide(snap(pg, rolled(turn), name="n2", wall_now=NOW)).actions == (a.RestartPostgres(False, "n1"),)
    again = replace(pg, started_at=NOW - 0.5)  # restarted since the phase began
    assert not any(isinstance(x, a.RestartPostgres) for x in decide(snap(again, rolled(turn), name="n2",
                                                                        wall_now=NOW)).actions)


def test_the_next_member_waits_until_the_restarted_one_streams_within_max_lag() -> None:
    turn = replace(START, current="n2", phases={"n2": RESTARTING}, since=NOW - 3)
    starting = replace(N2, started_at=NOW - 1, state="starting")
    assert not any(isinstance(x, a.WriteRollout) for x in lead(rolled(turn, n2=starting)).actions)
    behind = replace(N2, started_at=NOW - 1)
    lagging = replace(LIVE, replica_lsns={"n2": 5000 - (2 << 20), "n3": 5000}, lsn=5000)
    assert not any(isinstance(x, a.WriteRollout) for x in lead(rolled(turn, n2=behind), lagging).actions)
    back = written(lead(rolled(turn, n2=behind)))
    assert back.phase("n2") == DONE and back.current == ""


def test_a_member_that_does_not_come_back_stops_the_rollout_with_the_reason() -> None:
    turn = replace(START, current="n2", phases={"n2": RESTARTING}, since=NOW - 301, member_timeout=300)
    r = written(lead(rolled(turn, n2=replace(N2, state="crashed"))))
    assert r.state == FAILED and "n2 did not come back within 300 s (crashed)" in r.reason


def test_nobody_restarts_while_another_member_is_unhealthy() -> None:
    d = lead(rolled(START, n3=replace(N3, state="stopped")))
    assert not any(isinstance(x, a.WriteRollout) for x in d.actions)
    assert "waiting for n3 (stopped) before restarting n2" in d.note


def test_the_leader_goes_last_through_a_switchover_to_the_best_replica() -> None:
    last = replace(START, phases={"n2": DONE, "n3": DONE})
    d = lead(rolled(last))
    assert written(d).phase("n1") == SWITCHING and a.NameSwitchoverCandidate("n2") in d.actions


def test_the_old_primary_counts_as_restarted_once_it_streams_from_the_new_one() -> None:
    switching = replace(START, current="n1", phases={"n2": DONE, "n3": DONE, "n1": SWITCHING}, since=NOW - 5)
    old = replace(N1, role="replica", state="streaming", started_at=NOW - 2)
    v = replace(rolled(switching, n1=old, n2=replace(N2, role="primary")), leader="n2")
    pg = replace(PRIMARY, replica_lsns={"n1": 5000, "n3": 5000})
    r = written(decide(snap(pg, v, name="n2", wall_now=NOW)))
    assert r.phase("n1") == DONE
    finished = written(decide(snap(pg, replace(v, rollout=r), name="n2", wall_now=NOW)))
    assert finished.state == "done"


def test_pending_only_skips_members_without_a_pending_restart() -> None:
    pending = replace(START, pending_only=True)
    r = written(lead(rolled(pending)))
    assert r.phase("n2") == SKIPPED and r.current == ""


def test_abort_stops_after_the_member_in_progress() -> None:
    aborting = replace(START, abort=True, current="n2", phases={"n2": RESTARTING}, since=NOW - 3)
    r = written(lead(rolled(aborting, n2=replace(N2, started_at=NOW - 1))))
    assert r.phase("n2") == DONE and r.running  # n2 finishes first
    assert written(lead(rolled(r))).state == "aborted"


def test_no_step_while_paused_or_during_a_switchover() -> None:
    paused_cfg = DynamicConfig(**{**CFG.model_dump(), "pause": True})
    v = rolled(START)
    assert not any(isinstance(x, a.WriteRollout)
                   for x in decide(snap(LIVE, replace(v, config=paused_cfg), name="n1", config=paused_cfg,
                                        wall_now=NOW)).actions)
    assert rolling.coordinate(snap(LIVE, v, name="n1", wall_now=NOW)) is not None


def test_a_draining_replica_leaves_the_read_path_and_the_synchronous_set() -> None:
    h = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0)
    assert verdict("/replica", {}, h) == 200
    assert verdict("/replica", {}, replace(h, draining=True)) == 503
    assert verdict("/read-only", {}, replace(h, draining=True)) == 503
    from pgha.core import sync

    on = DynamicConfig(**{**CFG.model_dump(), "synchronous_mode": "on"})
    draining = replace(START, current="n2", phases={"n2": DRAINING}, since=NOW)
    v = replace(rolled(draining), sync=SyncState("n1", ("n2",), 1), config=on)
    assert sync.candidates(snap(LIVE, v, name="n1", config=on))[0] == "n3"


def test_refusals_say_why() -> None:
    v = view(n1=N1, n2=N2, n3=N3)
    paused_cfg = DynamicConfig(**{**CFG.model_dump(), "pause": True})
    assert check_rollout(v, paused_cfg, ["n1", "n2"], 1 << 20, None).status == 412  # type: ignore[union-attr]
    from pgha.core.cluster import FailoverRequest

    assert check_rollout(replace(v, failover=FailoverRequest("n1", "n2")), CFG, ["n2"], 1 << 20, None).status == 409  # type: ignore[union-attr]
    sick = check_rollout(view(n1=N1, n2=N2, n3=replace(N3, state="stopped")), CFG, ["n2"], 1 << 20, None)
    assert sick is not None and sick.status == 412 and "n3 is unhealthy" in sick.reason
    lonely = check_rollout(view(n1=N1, n2=replace(N2, tags={"nofailover": True})), CFG, ["n1", "n2"], 1 << 20, None)
    assert lonely is not None and "no replica can take over from n1" in lonely.reason
    assert check_rollout(v, CFG, ["n1", "n2", "n3"], 1 << 20, None) is None
    running = replace(v, rollout=START)
    assert check_rollout(running, CFG, ["n2"], 1 << 20, None).status == 409  # type: ignore[union-attr]


def test_a_newer_installed_binary_is_a_pending_restart_with_its_reason() -> None:
    assert parse_version("postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)") == (150010, "15.10")
    assert parse_version("garbage") is None
    assert restart_reason(150008, (150010, "15.10")) == {"server_version": {"old_value": "15.8", "new_value": "15.10"}}
    assert restart_reason(150010, (150010, "15.10")) == {}


def test_the_record_survives_its_json() -> None:
    r = replace(START, phases={"n2": DONE}, current="n3", since=5.0, reason="x", abort=True,
                marks=(("n2", 1.0), ("n3", 4.0)))
    assert Rollout.from_json(r.to_json(), 7) == replace(r, revision=7)
    e = replace(r, state="aborted").event("n1", 9.0)
    assert e.kind == "rollout" and [(p.name, p.seconds) for p in e.phases] == [("n2", 3.0), ("n3", 5.0)]
    assert Rollout.from_json("{not json") is None


def test_a_synchronous_standby_restarts_only_once_another_holds_the_commits_or_says_it_cannot() -> None:
    on = DynamicConfig(**{**CFG.model_dump(), "synchronous_mode": "on"})
    draining = replace(START, current="n2", phases={"n2": DRAINING}, since=NOW - 2.5)
    listed = replace(rolled(draining, n2=replace(N2, sessions=0)), sync=SyncState("n1", ("n2",), 1), config=on)
    d = decide(snap(LIVE, listed, name="n1", config=on, wall_now=NOW))
    assert not any(isinstance(x, a.WriteRollout) for x in d.actions) and "moving the synchronous role" in d.note
    moved = replace(listed, sync=SyncState("n1", ("n3",), 1))
    assert written(decide(snap(LIVE, moved, name="n1", config=on, wall_now=NOW))).phase("n2") == RESTARTING
    alone = replace(listed, rollout=replace(draining, since=NOW - 11))
    d = decide(snap(LIVE, alone, name="n1", config=on, wall_now=NOW))
    assert written(d).phase("n2") == RESTARTING and "no other replica could take its place" in d.note
