"""The executor: carries out one action as its fields say and makes no choices.

Each action returns a ``Result`` that the loop folds into the next snapshot; nothing here changes
the cluster view or the observed Postgres state. Long jobs (``agent.jobs``) run beside the loop
under a ``Busy`` marker; their results are folded once they end. Any action that stops or
replaces Postgres sets the marker before it begins, so health checks stop calling this node a
primary first, and the loop clears it only after it has observed Postgres again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pgha import errors as e
from pgha.agent import failsafe, keys, peers
from pgha.agent.callbacks import CallbackRunner
from pgha.agent.jobs import PostgresJobs, Result, member_addr
from pgha.agent.timeline import Timeline
from pgha.core import actions as a
from pgha.core import lease as core_lease
from pgha.core import publish, standby
from pgha.core.cluster import HistoryEntry, LeaderStatus, lsn_text
from pgha.core.jobs import Busy, Job
from pgha.core.snapshot import Snapshot
from pgha.postgres import sessions, slots

log = logging.getLogger("pgha")


@dataclass
class Tally:
    promotions: int = 0
    promotion_seconds: list[float] = field(default_factory=list)
    demotions: int = 0
    reloads: int = 0


class Executor:
    def __init__(self, jobs: PostgresJobs, publish: Callable[[], None],
                 announce: Callable[[], Awaitable[None]], wake: Callable[[], None],
                 callbacks: CallbackRunner, refresh: Callable[[], Awaitable[None]]) -> None:
        self.jobs = jobs
        self.timeline = Timeline(jobs.store, jobs.postgres.query_in)
        self.callbacks = callbacks  # fired after the change they report; never awaited
        self.store = jobs.store
        self.postgres = jobs.postgres
        self._publish = publish  # republish the node report (in memory)
        self._announce = announce  # publish our member record to etcd now
        self._refresh = refresh  # observe Postgres again and republish the node report
        self._wake = wake
        self.busy: Busy | None = None
        self.finished: list[Result] = []  # results of jobs that ended since the loop last folded them
        self.tally = Tally()
        self._job: asyncio.Task[None] | None = None

    # -- the busy marker ---------------------------------------------------------------

    def mark(self, busy: Busy) -> None:
        self.busy = busy
        self._publish()

    def job_running(self) -> bool:
        return self._job is not None and not self._job.done()

    def settle(self) -> None:
        """Postgres was observed again: the marker of a job that ended can go."""
        if not self.job_running():
            self.busy = None

    def _background(self, busy: Busy, job: Callable[[], Awaitable[Result]], result: Result = Result(),
                    then: tuple[str, str] | None = None) -> Result:
        """Run ``job`` beside the loop; ``then``: the callback (action, role) to fire once it succeeded."""
        self.mark(busy)

        async def runner() -> None:
            try:
                done = await job()
                self.finished.append(done)
                if then is not None and done.ok:
                    self.callbacks.fire(*then)
                self._wake()
            except (e.PghaError, OSError) as exc:
                # no wake: a job that keeps failing (a broken restore command, say) is tried
                # again at the loop's own pace, not in a tight loop
                log.error("%s failed: %s", busy, exc)

        self._job = asyncio.get_running_loop().create_task(runner())
        return result

    async def fence_stop(self) -> None:
        """The last-resort guard fired: Postgres stops taking writes now."""
        self.mark(Busy(Job.STOPPING, "lease guard"))
        try:
            await self.postgres.stop("immediate")
            self.callbacks.fire("on_stop", "primary")
        except (e.PghaError, OSError) as exc:
            log.error("could not stop postgres for the lease guard: %s", exc)
        self._wake()

    # -- dispatch: one branch per action ------------------------------------------------

    async def execute(self, act: a.Action, s: Snapshot) -> Result:
        """Actions that start, stop or replace Postgres (most as jobs beside the loop)."""
        jobs = self.jobs
        match act:
            case a.InitializeCluster():
                if not await self.store.claim_initialize(s.config.retry_timeout):
                    log.info("another node won the bootstrap race")
                    return Result()
                return self._background(Busy(Job.BOOTSTRAPPING), lambda: jobs.bootstrap(act, s),
                                        then=("on_start", "primary"))
            case a.CloneFrom():
                member_addr(s, act.leader)
                return self._background(Busy(Job.CLONING, f"from {act.leader}"), lambda: jobs.clone(act, s),
                                        then=("on_start", "replica"))
            case a.StartPostgres():
                role = "primary" if act.primary else f"replica of {act.follow or 'nobody'}"
                return self._background(Busy(Job.STARTING, f"as {role}"), self.timeline.restart(
                    s, act.primary, lambda: jobs.start(s, act.primary, act.follow, timeout=act.timeout)),
                    then=("on_start", "primary" if act.primary else "replica"))
            case a.Demote():
                return await self._demote(act, s)
            case a.Rewind():
                member_addr(s, act.leader)
                return self._background(Busy(Job.REWINDING, f"from {act.leader}"), lambda: jobs.rewind(act, s),
                                        then=("on_start", "replica"))
            case a.ResumeAsPrimary():
                return self._background(Busy(Job.RESUMING, "as primary"), self.timeline.resume(lambda: jobs.resume(s)),
                                        then=("on_start", "primary"))
            case a.RestartPostgres():
                return self._background(Busy(Job.RESTARTING), lambda: jobs.restart(act, s), Result(restart_done=True),
                                        then=("on_restart", "replica" if s.pg.in_recovery else "primary"))
            case a.Reinitialize():
                member_addr(s, act.leader)
                return self._background(Busy(Job.REINITIALIZING, f"from {act.leader}"),
                                        lambda: jobs.reinitialize(act, s), Result(reinit_started=True),
                                        then=("on_start", "replica"))
            case a.StopPostgres():
                self.mark(Busy(Job.STOPPING, act.reason))
                await self.postgres.stop(act.mode)
                log.info("postgres stopped (%s)", act.mode)
                self.callbacks.fire("on_stop", "replica" if s.pg.in_recovery else "primary")
                return Result(wake=True)
            case a.HandOver():
                return await self._hand_over(act, s)
            case a.Exit():
                if self._job is not None:
                    self._job.cancel()
                await jobs.keeper.revoke(min(2.0, s.config.retry_timeout))
                return Result(exit=True)
        return await self._execute_in_place(act, s)

    async def _execute_in_place(self, act: a.Action, s: Snapshot) -> Result:
        """Actions on etcd's keys and on the running Postgres, inside the loop."""
        match act:
            case a.AcquireLeader():
                return await self._acquire(act, s)
            case a.KillPostgres():
                return await self._kill(act, s)
            case a.AskPeers():
                return await self._ask_peers(act, s)
            case a.ConfirmFailsafe():
                return await failsafe.confirm_round(act, s, self.jobs.local.restapi)
            case a.Promote():
                return await self._promote(s)
            case a.FollowRemote():
                params = self.jobs.configure(s, False, standby.REMOTE, s.chosen_sync)
                await self.postgres.query("SELECT pg_reload_conf()")
                log.info("standby leader: now following the standby_cluster source")
                return Result(applied_parameters=params)
            case a.FollowLeader():
                params = self.jobs.configure(s, False, act.leader, s.chosen_sync, slot=act.slot)
                await self.postgres.query("SELECT pg_reload_conf()")
                log.info("now following %s", act.leader)
                return Result(applied_parameters=params, wake=True)  # streams within ms: judge it now
            case a.TendReplicaSlots():
                await slots.tend(self.postgres.query, dict(act.positions), act.drop)
                await slots.advance_logical(self.postgres.query, self._query_in(s), act.logical)
                return Result()
            case a.CopyLogicalSlots():
                return await self._copy_logical_slots(act, s)
            case a.PublishLeaderStatus():
                return await self._publish_status(act, s)
            case a.ClearDivergence():
                await self.jobs.settle_rejoin(s, act.reason)
                return Result(wake=True)
            case a.ReloadConfig():
                return await self._reload(s, s.chosen_sync, act.reason)
            case a.SetSyncStandbys():
                return await self._set_sync(act, s)
            case a.CancelTransactions():
                return await self._cancel(act)
            case a.AnnounceHandover():
                # The checkpoint that keeps the shutdown short runs now, while clients still
                # write, not once the poolers hold them paused (the hand-over's is then small).
                await self._step("checkpoint before the poolers pause")
                await self.postgres.checkpoint(max(1.0, s.config.ttl / 2))
        done = await keys.execute(act, s, self.store, self._lease(), self.jobs.local.bootstrap.dcs)
        if done is None:
            raise e.PghaError(f"no executor for {act!r}")
        return done

    # -- the actions that run inside the loop --------------------------------------------

    def _query_in(self, s: Snapshot) -> slots.QueryIn:
        """Statements in another database, inside the loop: bounded like a look at Postgres."""
        return functools.partial(self.postgres.query_in, timeout=core_lease.observe_timeout(s.config))

    def _lease(self) -> int:
        """Our lease, for compare-and-set guards (0 matches no key: no lease, no write)."""
        return self.jobs.keeper.lease or 0

    async def _reload(self, s: Snapshot, chosen_sync: str | None, reason: str) -> Result:
        """Rewrite postgresql.conf for the current role and send SIGHUP."""
        following = s.pg.following
        follow = following if s.pg.in_recovery and (following in s.cluster.members or following == standby.REMOTE) else None
        params = self.jobs.configure(s, not s.pg.in_recovery, follow, chosen_sync)
        await self.postgres.query("SELECT pg_reload_conf()")
        self.tally.reloads += 1
        log.info("reloaded postgres: %s", reason)
        self.callbacks.fire("on_reload", "replica" if s.pg.in_recovery else "primary")
        return Result(applied_parameters=params, reload_done=True)

    async def _ask_peers(self, act: a.AskPeers, s: Snapshot) -> Result:
        positions, refused = await peers.received_positions(s.cluster.members, act.members,
                                                            min(2.0, s.config.retry_timeout / 2), self.jobs.local.restapi.cafile)
        log.info("asked %s for their positions: %s%s", ", ".join(act.members), positions or "no answer",
                 f"; no agent listens on {', '.join(sorted(refused))}" if refused else "")
        return Result(peer_positions=positions, peers_asked=frozenset(act.members), peers_refused=refused, wake=True)

    async def _copy_logical_slots(self, act: a.CopyLogicalSlots, s: Snapshot) -> Result:
        """Read the slots on the leader and check that this standby has the WAL they need, in the
        loop (a refusal restarts nothing); then stop, install and start again, beside it."""
        host, port = member_addr(s, act.leader)
        states = await slots.read_states(self.postgres.superuser_dsn(host, port), act.names)
        problem = slots.copy_problem(act.names, states, await slots.oldest_wal(self.postgres.query))
        if problem is not None:
            raise e.PostgresError(problem)
        return self._background(Busy(Job.RESTARTING, f"to load logical slots from {act.leader}"),
                                lambda: self.jobs.copy_logical_slots(act, s, states), then=("on_restart", "replica"))

    async def _demote(self, act: a.Demote, s: Snapshot) -> Result:
        t0, began = time.monotonic(), time.time()
        log.warning("demoting: %s", act.reason)
        self.mark(Busy(Job.DEMOTING, act.reason))
        await self.postgres.stop(act.mode)
        self.tally.demotions += 1
        self.timeline.stepped_down("demotion", s, s.pg.timeline, s.pg.lsn, act.reason, [("demote", began)])
        log.warning("demoted in %.2f s: postgres no longer accepts writes", time.monotonic() - t0)
        self.callbacks.fire("on_role_change", "replica")
        return self._background(Busy(Job.STARTING, "read-only"), lambda: self.jobs.start(s, False, act.follow))

    async def _kill(self, act: a.KillPostgres, s: Snapshot) -> Result:
        self.mark(Busy(Job.STOPPING, act.reason))
        log.warning("killing postgres (SIGQUIT, then SIGKILL to the postmaster and its backends): %s", act.reason)
        if await self.postgres.kill(act.grace):
            log.warning("killed postgres and its backends: %s", act.reason)
        else:
            log.error("postgres processes outlived SIGKILL (blocked in the kernel?): the kill stays pending, "
                      "they can take no more writes")
        self.callbacks.fire("on_stop", "replica" if s.pg.in_recovery else "primary")
        return Result(wake=True)

    async def _acquire(self, act: a.AcquireLeader, s: Snapshot) -> Result:
        lease = self.jobs.keeper.lease
        if lease is None:
            return Result(ok=False)
        if await self.store.acquire_leader(lease, s.config.retry_timeout):
            self.timeline.acquired()
            log.info("acquired leader key: %s", act.reason)
            return Result(wake=True)
        log.info("lost the race for the leader key")
        return Result()

    async def _promote(self, s: Snapshot) -> Result:
        t0 = time.monotonic()
        old_tl, lsn = s.pg.timeline, s.pg.lsn
        # Claim ``status`` before promoting: from here on the old primary can no longer count
        # itself the last primary (rule used in synchronous mode), even if we die mid-promotion.
        if not await self.store.publish_status(LeaderStatus(s.name, old_tl, lsn), self._lease(), s.config.retry_timeout):
            raise e.PghaError("the leader key is no longer ours: not promoting")
        if s.config.postgresql.use_slots:  # the others re-point here at once: their slots must be there
            try:
                await slots.create_missing(self.postgres.query, frozenset(m for m in s.cluster.members if m != s.name))
            except e.PghaError as exc:
                log.warning("could not create the members' slots before the promotion: %s", exc)
        lsn = await self.postgres.promote(old_tl) or lsn  # the exact fork, recorded in the history below
        promoted = time.time()
        # Health checks answer from the published report: it must say primary before the callback
        # moves traffic here (a virtual IP), or /primary could say 503 with the address up.
        try:
            await self._refresh()
        except (e.PghaError, OSError) as exc:
            log.warning("could not observe postgres after the promotion: %s", exc)
        self.callbacks.fire("on_role_change", "primary")
        took = time.monotonic() - t0
        self.tally.promotions += 1
        self.tally.promotion_seconds.append(took)
        log.info("promoted %s (was on timeline %d) in %.2f s", s.name, old_tl, took)
        # pg_rewind on the old primary reads our timeline from the control file, which only a
        # checkpoint updates; do not make clients wait for it.
        asyncio.get_running_loop().create_task(self._checkpoint_quietly())
        f = s.cluster.failover
        reason = (f"switchover from {f.leader}" if f and f.leader else "manual failover" if f
                  else "failover: no leader")
        self.timeline.promoted(s, old_tl, lsn, reason, promoted)
        try:
            await self.store.append_history(s.cluster, HistoryEntry(old_tl, lsn, reason, _now_iso(), s.name),
                                            s.config.retry_timeout)
        except e.DcsError as exc:
            log.warning("could not record the promotion in the history: %s", exc)
        return Result(wake=True)

    async def _checkpoint_quietly(self) -> None:
        try:
            await self.postgres.checkpoint()
        except e.PostgresError as exc:
            log.warning("checkpoint after promotion failed: %s", exc)

    async def _publish_status(self, act: a.PublishLeaderStatus, s: Snapshot) -> Result:
        positions: dict[str, int] = {}
        physical = s.config.postgresql.use_slots or bool(act.permanent)
        rows = await slots.read(self.postgres.query) if physical or act.logical else []
        if physical:
            positions = await slots.keep(self.postgres.query, rows, act.slots if s.config.postgresql.use_slots
                                         else frozenset(), act.permanent, s.config.ignore_slots)
        if act.logical:
            positions.update(await slots.keep_logical(self.postgres.query, self._query_in(s), rows, act.logical))
        status = LeaderStatus(s.name, s.pg.timeline, s.pg.lsn, positions, dict(act.retain))
        if publish.status_due(s.cluster.status, status, s.config):  # an idle leader writes nothing
            await self.store.publish_status(status, self._lease(), self.jobs.keeper.deadline(leader=True))
        members = dict(act.failsafe) if act.failsafe is not None else None
        if members != s.cluster.failsafe:
            await self.store.set_failsafe(members, self._lease(), self.jobs.keeper.deadline(leader=True))
        return Result()

    async def _hand_over(self, act: a.HandOver, s: Snapshot) -> Result:
        t0, marks = time.monotonic(), [("checkpoint", time.time())]
        log.info("switchover to %s: checkpoint, then clean stop", act.candidate)
        # Both steps end well within the lease (renewed meanwhile by the lease keeper).
        limit = max(1.0, s.config.ttl / 2)
        await self._step("checkpoint")
        await self.postgres.checkpoint(limit)  # makes the shutdown checkpoint, and so the stop, short
        await self._step("stopping postgres")
        marks.append(("stop", time.time()))
        await self.postgres.stop("fast", timeout=limit)
        final_lsn = await self.postgres.shutdown_checkpoint_lsn()
        tl = s.pg.timeline or (self.postgres.disk.primary_on_timeline or 0)
        if not await self.store.publish_status(LeaderStatus(s.name, tl, final_lsn), self._lease(),
                                               s.config.retry_timeout):
            # Without our final position the candidate could promote short of it: keep the key.
            raise e.PghaError("switchover: could not publish the final WAL position; the leader key stays")
        self.postgres.remember(handover_lsn=final_lsn)
        await self._step(f"stopped at {lsn_text(final_lsn)}")
        marks.append(("release", time.time()))
        await self.store.release_leader(self._lease(), s.cluster.leader_revision, s.config.retry_timeout)
        self.tally.demotions += 1
        self.timeline.stepped_down("handover", s, tl, final_lsn, f"switchover to {act.candidate}", marks)
        self.callbacks.fire("on_role_change", "replica")
        log.info("switchover: stopped at %X and released the leader key to %s in %.2f s",
                 final_lsn, act.candidate, time.monotonic() - t0)
        # The candidate has our shutdown checkpoint, so we can stream from it straight away; the
        # loop confirms from its history that no rewind is needed before forgetting we led.
        return self._background(Busy(Job.STARTING, f"as replica of {act.candidate}"),
                                lambda: self.jobs.start(s, False, act.candidate))

    async def _step(self, detail: str) -> None:
        """Show a hand-over step in our member record (``pgha switchover`` prints them)."""
        self.mark(Busy(Job.HANDING_OVER, detail))
        try:
            await self._announce()
        except e.DcsError as exc:
            log.warning("could not publish the switchover step: %s", exc)

    async def _cancel(self, act: a.CancelTransactions) -> Result:
        cancelled = await sessions.cancel_open_transactions(self.postgres.query)
        if cancelled:
            log.warning("cancelled %d running statement(s) in open transactions (pids %s): %s",
                        len(cancelled), ", ".join(map(str, cancelled)), act.reason)
        return Result()

    async def _set_sync(self, act: a.SetSyncStandbys, s: Snapshot) -> Result:
        result = await self._reload(s, act.setting, f"synchronous_standby_names = {act.setting!r}")
        if act.setting in ("", "*"):
            log.warning("no synchronous standby available: %s", "commits wait (strict mode)" if act.setting
                        else "replication is asynchronous until one returns")
        return Result(applied_parameters=result.applied_parameters, chosen_sync=act.setting, wake=True)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
