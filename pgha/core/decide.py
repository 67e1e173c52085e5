"""The HA decision: what this node must do now, as a pure function of one Snapshot.

Rules, in the order they are checked:
1. shutting down: stop Postgres cleanly, then give up the lease (the leader key goes with it).
2. a long job (clone, rewind) runs: wait; the lease keeper keeps renewing meanwhile. A writable
   Postgres whose fence cannot be armed demotes.
3. etcd unreachable: a writable primary demotes once its lease is within ``retry_timeout`` of
   expiring (in failsafe mode: unless every member confirms it, ``core.failsafe``); nobody else
   acts.
4. bootstrap: only a node without data races for ``initialize``; one with data records its system
   identifier instead (a wiped key space); an empty claim left by a dead winner is reclaimed
   after 3 * ttl; a node whose data belongs to another cluster refuses.
5. operator requests (restart, reinitialize, switchover/failover) run even while paused; then,
   paused: no automatic action; the leader keeps its key, and the only writable primary takes
   it back after an outage took it (``core.paused``).
6. Postgres hung (alive, not answering): the leader kills it and restarts it in place, and
   releases the key if it is not back within ttl (``core.hung``); a hung replica is left alone.
   Postgres down: the leader restarts it in place (until ``primary_start_timeout``, or until a
   start ends with the postmaster exiting: then it releases the key); others start as replicas
   (an old primary after a rewind, unless its timeline's recorded end lets it start to look).
7. the leader promotes its standby (or resumes as primary on the same timeline when it was the
   last primary and nobody followed since), then publishes its position.
8. a follower demotes if writable, rewinds if diverged (``core.timelines``), and follows the leader.
9. no leader key: only a healthy, eligible replica races; a less advanced one waits
   (``core.election``).
Last, a running Postgres that is not being stopped or restarted reloads when its parameters
differ from the wanted ones.
"""

from __future__ import annotations

from pgha.core import (
    election,
    failsafe,
    fitness,
    handover,
    hung,
    namesake,
    parameters,
    paused,
    rolling,
    slots,
    standby,
    sync,
    timelines,
    topology,
)
from pgha.core.actions import (
    AcquireLeader,
    Action,
    AskPeers,
    ClaimInitialize,
    ClearDivergence,
    ClearFailover,
    CloneFrom,
    CopyLogicalSlots,
    Decision,
    Demote,
    Exit,
    FollowLeader,
    HandOver,
    InitializeCluster,
    KillPostgres,
    NameSwitchoverCandidate,
    Promote,
    PublishLeaderStatus,
    Reinitialize,
    ReclaimInitialize,
    ReleaseLeader,
    ReloadConfig,
    RestartPostgres,
    ResumeAsPrimary,
    Rewind,
    StartPostgres,
    StopPostgres,
    TakeOverLeaderKey,
    TendReplicaSlots,
)
from pgha.core.cluster import FailoverRequest
from pgha.core.snapshot import Snapshot

# Actions after which the running Postgres is no longer the one a reload would reach.
_REPLACES_POSTGRES = (CloneFrom, CopyLogicalSlots, StartPostgres, KillPostgres, Demote, Rewind, InitializeCluster,
                      ResumeAsPrimary, HandOver, RestartPostgres, Reinitialize, StopPostgres, Exit, ReloadConfig)


def _wait(note: str) -> Decision:
    return Decision((), note)


def decide(s: Snapshot) -> Decision:
    d = rolling.join(s, _decide(s), _REPLACES_POSTGRES)
    if (s.busy is None and s.pg.running and s.applied_parameters is not None
            and not any(isinstance(x, _REPLACES_POSTGRES) for x in d.actions)
            and parameters.wanted(s.config, s.chosen_sync) != s.applied_parameters):
        return Decision((*d.actions, ReloadConfig("postgresql.parameters changed")), d.note)
    return d


def _decide(s: Snapshot) -> Decision:
    if s.shutting_down:
        return _shutdown(s)
    if s.busy:
        # a leader restarting after a hang looks again soon: its ttl bound runs from the hang
        soon = 1.0 if s.cluster.leader == s.name and hung.silent_for(s) is not None else None
        return Decision((), f"{s.busy} in progress", recheck=soon)
    if s.pg.writable and not s.fence_ok and not s.config.pause:
        return Decision((Demote("immediate", reason="the fence process cannot be armed"),),
                        "no fence outlives this agent: demoting")
    if not s.dcs_ok:
        return _without_dcs(s)
    c = s.cluster
    twin = _namesake(s)
    if twin is not None:
        return twin
    unclaimed = _without_initialize(s)
    if unclaimed is not None:
        return unclaimed
    if s.pg.data_dir_empty:
        if c.leader and c.leader != s.name and c.leader in c.members:
            return Decision((CloneFrom(c.leader),), f"cloning from leader {c.leader}")
        return _wait("no leader to clone from yet")
    if c.leader == s.name and not s.owns_key() and s.holds_lease():
        # (without a safe lease of our own the leader rules below demote instead; a namesake's
        # key never gets here: ``_namesake`` stopped us first)
        return Decision((TakeOverLeaderKey(c.leader_lease, c.leader_revision),),
                        "the leader key is bound to an earlier lease of this agent: taking it over")
    requested = _operator_request(s)
    if requested is not None:
        return requested
    if s.config.pause:
        return paused.decide(s, _publish(s))
    stuck = hung.decide(s)
    if stuck is not None:
        return stuck
    if not s.pg.running:
        return _postgres_down(s)
    if c.leader == s.name:
        return _as_leader(s)
    if c.leader:
        return _as_follower(s, c.leader)
    return election.without_leader(s)


def _namesake(s: Snapshot) -> Decision | None:
    bound = namesake.foreign_lease(s)
    if bound is None or s.owns_key():
        return None
    if namesake.live_namesake(s) is None:
        return _wait(f"members/{s.name} is bound to lease {bound:x}, never ours: waiting for it to expire "
                     f"(if it does not, another agent runs with the name {s.name})")
    return Decision(((StopPostgres("fast"),) if _writable(s) else ()) + (Exit(),),
                    f"another agent runs with the name {s.name} (its lease {bound:x} holds members/{s.name}): "
                    "two nodes share a name; this one stops")


def _without_initialize(s: Snapshot) -> Decision | None:
    """Decisions while ``initialize`` does not name our cluster (None: it does). A primary whose
    key space was wiped (or taken by another cluster), the leader key with it, stops writes
    before anything else, bootstrap races included. While a claim is empty nobody can take the
    leader key, so a primary left writable then is still the only writer (and a bootstrap
    winner's own view can show its claim empty for a moment after it finished): it demotes only
    before the claim is reclaimed, which lets others lead."""
    c = s.cluster
    stop = _writable(s) and not s.config.pause
    reclaim = (c.initialize == "" and s.initialize_empty_since is not None
               and s.now - s.initialize_empty_since > 3 * s.config.ttl)
    if stop and (c.initialize is None or reclaim or s.pg.sysid not in (None, c.initialize or s.pg.sysid)):
        return Decision((Demote("immediate", reason="the cluster's keys are gone, the leader key with them"),),
                        "running as primary without this cluster's keys: demoting")
    if c.initialize is None:
        return _uninitialized(s)
    if reclaim:
        return Decision((ReclaimInitialize(c.initialize_revision),), "the bootstrap claim was never completed: reclaiming it")
    if c.initialize == "":
        return _wait("another node is bootstrapping the cluster")
    if s.pg.sysid is not None and s.pg.sysid != c.initialize:
        return _wait(f"data directory belongs to another cluster (system identifier {s.pg.sysid}, "
                     f"cluster has {c.initialize}): refusing to join")
    return None


def _uninitialized(s: Snapshot) -> Decision:
    """No ``initialize`` key. Only a node without data bootstraps a new cluster; a node with
    data (the key space was wiped or lost) records its system identifier and lets the ordinary
    rules pick the most advanced node, which takes the key through a normal promotion."""
    if s.pg.data_dir_empty:
        if s.fence_problem:
            return _wait(f"cluster is not initialized, but the {s.fence_problem}")
        return Decision((InitializeCluster(run_initdb=True),), "cluster is not initialized: racing to bootstrap it")
    if s.pg.sysid is None:
        return _wait("the cluster has no initialize key and our system identifier is not known yet")
    return Decision((ClaimInitialize(s.pg.sysid),),
                    "the cluster has no initialize key but this node has data: recording its system identifier")


def _shutdown(s: Snapshot) -> Decision:
    if s.config.pause and s.pg.running:
        # As Patroni: in maintenance mode the agent leaves Postgres running (and the fence is
        # disarmed), so that agents can be stopped, upgraded or swapped without a restart.
        return Decision((Exit(),), "shutting down in maintenance mode: postgres keeps running")
    actions: list[Action] = []
    if s.pg.running:
        actions.append(StopPostgres("fast"))
    actions.append(Exit())
    return Decision(tuple(actions), "shutting down")


def _writable(s: Snapshot) -> bool:
    return s.pg.running and not s.pg.in_recovery


def _without_dcs(s: Snapshot) -> Decision:
    kept = failsafe.without_dcs(s)
    if kept is not None:
        return kept
    if _writable(s) and not s.holds_lease() and not s.config.pause:
        return Decision(
            (Demote("immediate", reason="cannot reach etcd and the leader lease is about to expire"),),
            "etcd unreachable: demoting before the leader lease can expire",
        )
    return _wait("etcd unreachable")


def _postgres_down(s: Snapshot) -> Decision:
    c, pg = s.cluster, s.pg
    if c.leader == s.name:
        if not s.holds_lease():
            return _wait("postgres down and the leader lease is about to expire")
        # A start that ended with the postmaster exiting (port taken, data directory unreadable)
        # fails again: only a start that takes long is waited for, as Patroni does.
        exited = pg.start_failed_since_down
        if exited or pg.down_since is not None and s.now - pg.down_since > s.config.primary_start_timeout:
            why = "postgres exited while starting" if exited else "postgres did not start within primary_start_timeout"
            # a postmaster still in crash recovery would open for writes after the key is gone
            kill = (KillPostgres(why),) if pg.postmaster_alive else ()
            return Decision((*kill, ReleaseLeader(why)), f"{why}: releasing the leader key")
        # We hold the key meanwhile: the start may take what is left of primary_start_timeout
        # (of ttl after a hang), never the hour a replica's start may take.
        left = s.config.primary_start_timeout - (s.now - pg.down_since if pg.down_since is not None else 0.0)
        hang = hung.start_timeout(s)
        limit = max(1.0, min(left, hang) if hang is not None else left)
        if standby.active(s.config):
            return Decision((StartPostgres(primary=False, follow=standby.REMOTE, timeout=limit),),
                            "postgres is down on the standby leader: restarting it in place")
        return Decision((StartPostgres(primary=timelines.was_last_primary(s), timeout=limit),),
                        "postgres is down on the leader: restarting it in place")
    if c.leader:
        if pg.primary_on_timeline is not None and not timelines.start_to_look(s):
            return Decision((_rewind(s, c.leader),), f"data may have diverged from leader {c.leader}: rewinding")
        return Decision((StartPostgres(primary=False, follow=c.leader),), f"starting as a replica of {c.leader}")
    return Decision((StartPostgres(primary=False),), "no leader: starting read-only")


def _rewind(s: Snapshot, leader: str) -> Rewind:
    m = s.cluster.members.get(leader)
    return Rewind(leader, leader_timeline=m.timeline if m else 0,
                  use_pg_rewind=s.config.postgresql.use_pg_rewind)


def _publish(s: Snapshot) -> PublishLeaderStatus:
    c = s.cluster
    retain = slots.retained(frozenset(c.members) - {s.name}, c.status.retain, c.status.leader, s.name, s.wall_now,
                            s.config.member_slots_seconds) if s.config.postgresql.use_slots else {}
    streaming = frozenset(n for n in c.members if n != s.name and topology.streams_from_leader(c, n, s.name))
    kept = streaming | {n for n, gone in retain.items() if gone} if s.config.postgresql.use_slots else frozenset()
    # Logical slots only once Postgres runs with logical WAL: trying before fails every loop.
    logical = () if slots.logical_waiting(s.config, s.pg.wal_level) else slots.logical(s.config)
    return PublishLeaderStatus(kept, permanent=slots.permanent(s.config), failsafe=failsafe.topology(s),
                               logical=logical, retain=tuple(sorted(retain.items())))


def _as_leader(s: Snapshot) -> Decision:
    pg = s.pg
    if not s.holds_lease():
        if _writable(s):
            return Decision((Demote("immediate", reason="the leader lease is about to expire"),),
                            "leader lease about to expire: demoting")
        return _wait("leader lease about to expire")
    if standby.active(s.config):
        return standby.as_standby_leader(s, _publish(s))
    if pg.in_recovery:
        if timelines.was_last_primary(s) and pg.following is None:
            return Decision((ResumeAsPrimary(),), "holding the leader key again: resuming as primary")
        return Decision((Promote(),), "holding the leader key: promoting")
    waiting = slots.logical_waiting(s.config, pg.wal_level)
    note = f"leader; {waiting}" if waiting else "leader"
    if sync.mode(s.config) != "off":
        return Decision((_publish(s), *sync.leader_actions(s)), note)
    return Decision((_publish(s),), note)


def _as_follower(s: Snapshot, leader: str) -> Decision:
    pg = s.pg
    if not pg.in_recovery:
        return Decision((Demote("immediate", reason=f"{leader} holds the leader key"),),
                        f"{leader} holds the leader key: demoting")
    if pg.primary_on_timeline is not None:
        clean = timelines.clean_handover(s, leader)
        if clean is None:
            return _wait(f"waiting for {leader} to record its promotion")
        why = (f"handed over cleanly at {pg.handover_lsn}, before {leader}'s fork" if clean else
               f"postgres accepted {leader}'s timeline {pg.timeline}: our WAL ended before its fork"
               if timelines.switched_onto_newer(pg) else None)
        if why:
            return Decision((ClearDivergence(why),), f"rejoining {leader} without a rewind")
        if not timelines.ends_before_fork(s):
            return Decision((_rewind(s, leader),), f"data may have diverged from leader {leader}: rewinding")
    source = topology.upstream(s.cluster, s.name, s.tags.replicatefrom, leader)
    if pg.following != source:
        if source != leader:
            return Decision((FollowLeader(source, slot=False),), f"streaming from {source} (replicatefrom), "
                                                                 f"leader {leader}")
        return Decision((FollowLeader(leader),), f"following new leader {leader}")
    past = timelines.past_fork(s, leader)
    if past is not None:
        return Decision((_rewind(s, leader),), f"cannot stream from {leader}'s newer timeline (our WAL goes past "
                                               f"its fork at {past}, or the fork is unknown): rewinding")
    via = f" via {source}" if source != leader else ""
    if not pg.streaming or pg.timeline < s.cluster.status.timeline:
        # just (re)started, re-pointed, or not yet on the new primary's timeline (an old primary: until Postgres
        # accepts it): look again soon, so /replica follows before HAProxy's checks take it out of the read path
        blip = pg.primary_on_timeline is not None or pg.last_streaming_at is not None and s.now - pg.last_streaming_at < 5.0
        return Decision((), f"replica of {leader}{via}", recheck=0.2 if blip else 1.0)
    plan = slots.replica_plan(s.config, s.cluster.status.slots, pg.logical_slots, pg.replayed_lsn, pg.idle_physical_slots)
    if plan.copy:
        return Decision((CopyLogicalSlots(leader, plan.copy),), f"copying logical slot(s) {', '.join(plan.copy)} "
                                                                f"from {leader}: restarting postgres once")
    if plan.physical or plan.logical or plan.drop:
        return Decision((TendReplicaSlots(plan.physical, plan.logical, plan.drop),), f"replica of {leader}{via}")
    return _wait(f"replica of {leader}{via}")


def _operator_request(s: Snapshot) -> Decision | None:
    c, pg = s.cluster, s.pg
    if pg.writable and not s.is_leader() and not s.config.pause:
        return None  # a due demotion goes first: no restart, reload or reinit of a primary that must stop
    if s.reinit_requested and c.leader != s.name and c.leader in c.members:
        return Decision((Reinitialize(str(c.leader)),), f"reinitializing from {c.leader} as requested")
    if rolling.restart_due(s):
        return Decision((RestartPostgres(primary=False, follow=pg.following),), "rolling restart: restarting postgres")
    if s.restart_at is not None and s.wall_now >= s.restart_at and pg.running:
        follow = None if pg.writable else pg.following
        return Decision((RestartPostgres(primary=pg.writable, follow=follow),), "restarting postgres as requested")
    if s.reload_requested and pg.running:
        return Decision((ReloadConfig("requested by an operator"),), "reloading postgres as requested")
    f = c.failover
    if f is None or f.scheduled_at is not None and s.wall_now < f.scheduled_at:
        return None
    if c.leader == s.name:
        # A standby cluster's standby leader hands over like a primary (it never promotes).
        standby_leading = standby.active(s.config) and pg.running and pg.in_recovery
        if not (s.is_leader() and (_writable(s) or standby_leading)):
            if f.candidate == s.name and s.is_leader() and pg.running and pg.in_recovery:
                # also while paused: the operator asked for this promotion
                return Decision((Promote(),), "switchover candidate holding the leader key: promoting")
            return None  # the request is cleared once we are primary
        if f.candidate == s.name:
            return Decision((ClearFailover("switchover complete"),), "switchover complete")
        if f.leader and f.leader != s.name:
            return Decision((ClearFailover(f"it names {f.leader} as leader but {s.name} leads"),),
                            "dropping a switchover request for another leader")
        candidate = f.candidate or fitness.best_candidate(c, s.config, s.name, pg.lsn, pg.replica_lsns)
        m = c.members.get(candidate or "")
        if (m is None or not fitness.switchover_ready(m, s.config, pg.lsn, pg.replica_lsns)
                or not fitness.sync_ok(c, s.config, m.name)):
            return Decision((ClearFailover(f"no healthy candidate ({candidate or 'none'})"),),
                            "switchover impossible: no healthy candidate")
        return handover.hand_over(s, m.name, (NameSwitchoverCandidate(m.name),) if f.candidate != m.name else ())
    if c.leader is None and pg.running and pg.in_recovery:
        return _during_switchover(s, f)
    return None


def _during_switchover(s: Snapshot, f: FailoverRequest) -> Decision | None:
    """No leader key while a request is pending. A switchover's old leader that still lives (its
    member record is bound to its lease) has published its final WAL position before releasing the
    key and may have acknowledged every commit up to there: nobody promotes without that position,
    however long it takes. Once its lease has run out, the request is an ordinary failover."""
    c, pg = s.cluster, s.pg
    waited = 0.0 if s.leader_lost_at is None else s.now - s.leader_lost_at
    handing_over = bool(f.leader) and f.leader != s.name and f.leader in c.members
    lacks_final = pg.lsn < c.status.lsn
    if f.candidate == s.name:
        why = election.ineligibility(s)
        if why is not None:
            return _wait(f"asked to take over but not eligible: {why}")
        if lacks_final and (handing_over or waited < s.config.retry_timeout):
            return _wait(f"switchover: waiting to receive the old primary's final WAL position {c.status.lsn}")
        return Decision((AcquireLeader(f"chosen by the operator (requested leader {f.leader or 'none'})"),),
                        "switchover candidate: taking the leader key")
    if handing_over and lacks_final:
        return _wait(f"switchover from {f.leader}: this node lacks its final WAL position {c.status.lsn}")
    if f.candidate and f.candidate in c.members and waited < s.config.retry_timeout:
        if not election.answers_fresh(s, (f.candidate,)):
            return Decision((AskPeers((f.candidate,)),), f"switchover to {f.candidate} in progress: asking "
                                                         "whether its agent runs")
        if not election.agents_gone(s, (f.candidate,)):
            return _wait(f"switchover to {f.candidate} in progress")
    return None
