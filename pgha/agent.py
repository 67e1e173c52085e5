"""The agent: a thin async shell around ``decide``.

Each loop: renew the lease and read the cluster (one deadline), observe Postgres, decide, execute
the actions in order, publish our member record. Long jobs (bootstrap, clone, rewind, starting
Postgres) run as background tasks so lease renewal and the REST API never wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from pgha import errors as e
from pgha.config.model import DynamicConfig, LocalConfig
from pgha.core import actions as a
from pgha.core import sync
from pgha.core.cluster import ClusterView, FailoverRequest, HistoryEntry, LeaderStatus, Member, SyncState
from pgha.core.decide import decide
from pgha.core.health import NodeHealth
from pgha.core.snapshot import PgState, Snapshot
from pgha.dcs.etcd import EtcdClient
from pgha.dcs.store import ClusterStore
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")


def make_client(cfg: LocalConfig) -> EtcdClient:
    return EtcdClient(cfg.etcd.urls(), cacert=cfg.etcd.cacert, cert=cfg.etcd.cert, key=cfg.etcd.key,
                      username=cfg.etcd.username, password=cfg.etcd.password)


class Agent:
    def __init__(self, cfg: LocalConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.client = make_client(cfg)
        self.store = ClusterStore(self.client, cfg.prefix, cfg.name)
        self.pg = PostgresController(cfg)
        self.view = ClusterView()
        self.dcs_ok = False
        self.last_dcs_ok: float | None = None
        self.pg_state = PgState()
        self.lease: int | None = None
        self.lease_valid_until: float | None = None
        self.leader_lost_at: float | None = None
        self.shutting_down = False
        self.busy: str | None = None
        self._job: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._exit = False
        self._note = ""
        self.last_loop_at = time.monotonic()
        self.counters: dict[str, int] = {"renewals": 0, "renewal_failures": 0, "promotions": 0, "demotions": 0,
                                         "restarts": 0}
        self.promotion_seconds: list[float] = []
        self._last_renewal: float | None = None
        self.max_renewal_gap = 0.0  # longest time between two successful lease renewals
        self.restart_at: float | None = None  # epoch seconds; set by POST /restart
        self.reinit_requested = False
        self.pending_restart = False
        self._applied_parameters: dict[str, Any] | None = None
        self.sync_setting: str | None = None  # synchronous_standby_names chosen by this leader

    # -- timing ---------------------------------------------------------------------

    @property
    def config(self) -> DynamicConfig:
        return self.view.config or self.cfg.bootstrap.dcs

    def holds_lease(self, now: float) -> bool:
        return self.lease_valid_until is not None and now < self.lease_valid_until - self.config.retry_timeout

    def wake(self) -> None:
        self._wake.set()

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        from pgha.api.server import ApiServer  # the API depends on the agent, not the reverse

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        api = ApiServer(self)
        await api.start()
        tasks = [loop.create_task(self._watch()), loop.create_task(self._lease_guard()),
                 loop.create_task(self._postmaster_exit())]
        log.info("agent started (etcd %s, api %s)", ",".join(self.client.urls), self.cfg.restapi.listen)
        try:
            while not self._exit:
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception:  # noqa: BLE001 - one bad loop must not end the agent
                    log.exception("HA loop failed; retrying")
                if self._exit:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.loop_wait)
        finally:
            for t in tasks:
                t.cancel()
            await api.stop()
            await self.pg.disconnect()
            await self.client.close()
            log.info("agent stopped")

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        self.shutting_down = True
        self.wake()

    async def run_once(self) -> None:
        now = time.monotonic()
        self.dcs_ok = await self._renew_and_read(now)
        self.pg_state = await self.pg.observe(self.pg_state, now)
        now = time.monotonic()
        if self.dcs_ok:
            if self.view.leader is None:
                self.leader_lost_at = self.leader_lost_at if self.leader_lost_at is not None else now
            else:
                self.leader_lost_at = None
        if self.pg_state.running:
            self.pg_state = self.pg_state.__class__(**{**self.pg_state.__dict__, "down_since": None})
        snap = Snapshot(now=now, name=self.name, tags=self.cfg.tags, config=self.config, cluster=self.view,
                        dcs_ok=self.dcs_ok, pg=self.pg_state, lease_valid_until=self.lease_valid_until,
                        leader_lost_at=self.leader_lost_at, shutting_down=self.shutting_down, busy=self.busy,
                        wall_now=time.time(), restart_at=self.restart_at, reinit_requested=self.reinit_requested)
        decision = decide(snap)
        if decision.note != self._note:
            log.info("%s", decision.note)
            self._note = decision.note
        for action in decision.actions:
            try:
                await self.execute(action)
            except (e.PghaError, OSError) as exc:
                log.error("%s failed: %s", type(action).__name__, exc)
                break
        if not self._exit and self.busy is None and self.pg_state.running:
            await self._apply_parameters()
        if self.dcs_ok and not self._exit:
            await self._publish_member()
        self.last_loop_at = time.monotonic()

    async def _apply_parameters(self) -> None:
        """Bring a running Postgres in line with the dynamic config's parameters: rewrite the
        config file and reload; parameters that need a restart show up as pending_restart."""
        wanted = self._parameters()
        if self._applied_parameters is None:
            self._applied_parameters = wanted  # written at start
        elif wanted != self._applied_parameters:
            await self.reload()
            log.info("applied changed postgresql.parameters (reloaded)")
        try:
            rows = await self.pg.query("SELECT count(*) FROM pg_settings WHERE pending_restart")
            self.pending_restart = bool(rows and rows[0][0])
        except e.PostgresError:
            pass

    async def reload(self) -> None:
        """Rewrite postgresql.conf for the current role and send SIGHUP (POST /reload)."""
        pg = self.pg_state
        follow = pg.following if pg.in_recovery else None
        addr = self._member_addr(follow) if follow and follow in self.view.members else None
        self.pg.write_config(self._parameters(), self._hba(), addr, follow if addr else None,
                             self.config.postgresql.use_slots)
        await self.pg.query("SELECT pg_reload_conf()")
        self._applied_parameters = self._parameters()

    async def _renew_and_read(self, now: float) -> bool:
        cfg = self.config
        deadline = cfg.retry_timeout
        if self.lease_valid_until is not None and self.view.leader == self.name:
            # Leave room to decide and demote before the lease can expire on etcd's side.
            deadline = max(0.2, min(deadline, self.lease_valid_until - cfg.retry_timeout - now))
        end = now + deadline
        try:
            sent = time.monotonic()
            ttl = await self.client.lease_keepalive(self.lease, deadline) if self.lease else 0
            if ttl <= 0:
                if self.lease is not None:
                    log.warning("our lease %x expired: any leader key we held is gone", self.lease)
                sent = time.monotonic()
                self.lease = await self.client.lease_grant(cfg.ttl, max(0.2, end - sent))
                ttl = cfg.ttl
            if self._last_renewal is not None:
                self.max_renewal_gap = max(self.max_renewal_gap, sent - self._last_renewal)
            self._last_renewal = sent
            self.lease_valid_until = sent + ttl
            self.counters["renewals"] += 1
            self.view = await self.store.load(max(0.2, end - time.monotonic()))
            self.last_dcs_ok = time.monotonic()
            return True
        except e.DcsError as exc:
            self.counters["renewal_failures"] += 1
            log.warning("etcd: %s", exc)
            return False

    async def _publish_member(self, state: str | None = None) -> None:
        pg = self.pg_state
        role = "uninitialized" if pg.data_dir_empty else ("replica" if pg.in_recovery else "primary") if pg.running else "stopped"
        state = state or (self.busy.split(" ")[0] if self.busy else
                          "streaming" if pg.streaming else "running" if pg.running else "stopped")
        member = Member(
            name=self.name, role=role, state=state,
            conn_url=f"postgres://{self.cfg.postgresql.host}:{self.cfg.postgresql.port}",
            api_url=self.cfg.restapi.url, host=self.cfg.postgresql.host, port=self.cfg.postgresql.port,
            timeline=pg.timeline, lsn=pg.lsn, replayed_lsn=pg.replayed_lsn,
            tags=self.cfg.tags.model_dump(), version=_version(), pending_restart=self.pending_restart,
            scheduled_restart=(datetime.fromtimestamp(self.restart_at, timezone.utc).isoformat(timespec="seconds")
                               if self.restart_at else ""),
            pause=self.config.pause, note=self._note)
        try:
            assert self.lease is not None
            await self.store.publish_member(member, self.lease, self.config.retry_timeout)
        except e.DcsError as exc:
            log.warning("could not publish member record: %s", exc)

    # -- background tasks ----------------------------------------------------------

    async def _watch(self) -> None:
        """Wake the loop at once when the leader key, config or initialize key changes."""
        revision = 0
        watched = {self.store.key(k) for k in ("leader", "config", "initialize", "failover")}
        while True:
            try:
                async for events in self.client.watch_prefix(self.cfg.prefix, revision):
                    for ev in events:
                        revision = ev.revision + 1
                        if ev.key in watched:
                            self.wake()
            except e.DcsError:
                pass
            except Exception:  # noqa: BLE001 - the watch must never die
                log.exception("watch failed")
            await asyncio.sleep(0.2)

    async def _lease_guard(self) -> None:
        """Last line of defence: if the loop is stuck while our lease runs out, stop Postgres."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if (self.view.leader == self.name and self.lease_valid_until is not None
                    and self.pg_state.running and not self.pg_state.in_recovery
                    and now >= self.lease_valid_until - self.config.retry_timeout / 2):
                log.error("leader lease expires in %.1fs and the loop has not demoted: stopping postgres now",
                          self.lease_valid_until - now)
                self._mark_not_writable()
                with contextlib.suppress(e.PghaError, OSError):
                    await self.pg.stop("immediate")
                self.wake()

    async def _postmaster_exit(self) -> None:
        while True:
            await self.pg.exited.wait()
            self.pg.exited.clear()
            if not self.shutting_down:
                log.warning("postmaster exited")
                self.wake()

    def _mark_not_writable(self) -> None:
        # Health checks must fail from the moment a demotion starts, not when it ends.
        self.pg_state = PgState(data_dir_empty=self.pg_state.data_dir_empty, sysid=self.pg_state.sysid,
                                primary_on_timeline=self.pg_state.primary_on_timeline,
                                following=self.pg_state.following, down_since=time.monotonic(),
                                last_streaming_at=self.pg_state.last_streaming_at)

    def _background(self, what: str, job: Callable[[], Awaitable[None]]) -> None:
        self.busy = what

        async def runner() -> None:
            try:
                await job()
            except (e.PghaError, OSError) as exc:
                log.error("%s failed: %s", what, exc)
            finally:
                self.busy = None
                self.wake()

        self._job = asyncio.get_running_loop().create_task(runner())

    # -- executing actions ----------------------------------------------------------

    async def execute(self, action: a.Action) -> None:
        handler = getattr(self, "_do_" + type(action).__name__)
        await handler(action)

    def _member_addr(self, name: str) -> tuple[str, int]:
        m = self.view.members.get(name)
        if m is None or not m.host:
            raise e.PostgresError(f"member {name} has no address in etcd")
        return m.host, m.port

    def _parameters(self) -> dict[str, Any]:
        params = dict(self.config.postgresql.parameters)
        if sync.mode(self.config) != "off":
            # Until the leader picks its standbys: strict mode waits for any ('*'), non-strict
            # mode runs asynchronously. A promoted standby starts from this too.
            fallback = "*" if self.config.synchronous_mode_strict else ""
            params["synchronous_standby_names"] = self.sync_setting if self.sync_setting is not None else fallback
        return params

    def _hba(self) -> list[str] | None:
        return self.cfg.postgresql.pg_hba or self.config.postgresql.pg_hba

    async def _start(self, primary: bool, follow: str | None) -> None:
        if primary:
            self.pg.make_primary()
            self.pg.write_config(self._parameters(), self._hba(), None, None, False)
        else:
            self.pg.make_standby()
            addr = self._member_addr(follow) if follow else None
            self.pg.write_config(self._parameters(), self._hba(), addr, follow, self.config.postgresql.use_slots)
        timeout = self.config.primary_start_timeout if primary else 3600
        await self.pg.start(max(timeout, 10))
        self._applied_parameters = self._parameters()

    async def _do_InitializeCluster(self, _: a.InitializeCluster) -> None:
        if not await self.store.claim_initialize(self.config.retry_timeout):
            log.info("another node won the bootstrap race")
            return

        async def bootstrap() -> None:
            created = self.pg.data_dir_empty()
            try:
                if created:
                    log.info("won the bootstrap race: running initdb")
                    await self.pg.initdb(self.cfg.bootstrap.initdb)
                self.sync_setting = ""  # bootstrap's own commits must not wait for standbys not yet cloned
                await self._start(primary=True, follow=None)
                await self.pg.create_roles()
                sysid = await self.pg.system_identifier()
                assert self.lease is not None and sysid
                if not await self.store.acquire_leader(self.lease, self.config.retry_timeout):
                    raise e.PostgresError("could not take the leader key after bootstrap")
                await self.store.finish_initialize(sysid, self.cfg.bootstrap.dcs.model_dump(mode="json"),
                                                   self.config.retry_timeout)
                log.info("bootstrapped cluster %s (system identifier %s): acquired leader key", self.cfg.scope, sysid)
            except BaseException:
                log.error("bootstrap failed: giving up the initialize key")
                with contextlib.suppress(e.PghaError, OSError):
                    await self.pg.stop("immediate")
                    if created:
                        self.pg.wipe()
                    await self.store.cancel_initialize(self.config.retry_timeout)
                raise

        self._background("bootstrapping", bootstrap)

    async def _do_CloneFrom(self, act: a.CloneFrom) -> None:
        host, port = self._member_addr(act.leader)

        async def clone() -> None:
            t0 = time.monotonic()
            log.info("cloning from %s with pg_basebackup", act.leader)
            await self.pg.basebackup(host, port)
            await self._start(primary=False, follow=act.leader)
            log.info("cloned from %s in %.1f s: streaming as a replica", act.leader, time.monotonic() - t0)

        self._background(f"cloning from {act.leader}", clone)

    async def _do_StartPostgres(self, act: a.StartPostgres) -> None:
        what = "starting as primary" if act.primary else f"starting as replica of {act.follow or 'nobody'}"
        self._background(what, lambda: self._start(act.primary, act.follow))

    async def _do_Demote(self, act: a.Demote) -> None:
        t0 = time.monotonic()
        log.warning("demoting: %s", act.reason)
        self._mark_not_writable()
        await self.pg.stop(act.mode)
        self.counters["demotions"] += 1
        log.warning("demoted in %.2f s: postgres no longer accepts writes", time.monotonic() - t0)
        self._background("starting read-only", lambda: self._start(False, None))

    async def _do_Rewind(self, act: a.Rewind) -> None:
        host, port = self._member_addr(act.leader)

        async def rewind() -> None:
            await self.pg.stop("fast")
            if self.config.postgresql.use_pg_rewind:
                try:
                    log.info("rewinding from %s with pg_rewind", act.leader)
                    leader_tl = self.view.members[act.leader].timeline
                    if not await self.pg.rewind(host, port, leader_tl):
                        log.info("%s has not checkpointed its new timeline yet: retrying the rewind", act.leader)
                        await asyncio.sleep(0.5)
                        return
                except e.PostgresError as exc:
                    log.warning("pg_rewind failed (%s): re-cloning from %s", exc, act.leader)
                    await self.pg.basebackup(host, port)
            else:
                log.info("use_pg_rewind is off: re-cloning from %s", act.leader)
                await self.pg.basebackup(host, port)
            await self._start(primary=False, follow=act.leader)
            log.info("rejoined as a replica of %s", act.leader)

        self._background(f"rewinding from {act.leader}", rewind)

    async def _do_AcquireLeader(self, act: a.AcquireLeader) -> None:
        assert self.lease is not None
        if await self.store.acquire_leader(self.lease, self.config.retry_timeout):
            log.info("acquired leader key: %s", act.reason)
            self.view = ClusterView(**{**self.view.__dict__, "leader": self.name})
            self.wake()
        else:
            log.info("lost the race for the leader key")

    async def _do_Promote(self, _: a.Promote) -> None:
        t0 = time.monotonic()
        old_tl, lsn = self.pg_state.timeline, self.pg_state.lsn
        # Claim ``status`` before promoting: from here on the old primary can no longer count
        # itself the last primary (rule used in synchronous mode), even if we die mid-promotion.
        await self.store.publish_status(LeaderStatus(self.name, old_tl, lsn), self.config.retry_timeout)
        await self.pg.promote()
        self.counters["promotions"] += 1
        self.promotion_seconds.append(time.monotonic() - t0)
        self.pg_state = await self.pg.observe(self.pg_state, time.monotonic())
        log.info("promoted %s on timeline %d in %.2f s", self.name, self.pg_state.timeline, time.monotonic() - t0)
        # pg_rewind on the old primary reads our timeline from the control file, which only a
        # checkpoint updates; do not make clients wait for it.
        asyncio.get_running_loop().create_task(self._checkpoint_quietly())
        f = self.view.failover
        reason = (f"switchover from {f.leader}" if f and f.leader else "manual failover" if f
                  else "failover: no leader")
        entry = HistoryEntry(old_tl, lsn, reason, _now_iso(), self.name)
        with contextlib.suppress(e.DcsError):
            await self.store.append_history(self.view, entry, self.config.retry_timeout)
            await self.store.publish_status(LeaderStatus(self.name, self.pg_state.timeline, self.pg_state.lsn),
                                            self.config.retry_timeout)
        self.wake()

    async def _checkpoint_quietly(self) -> None:
        try:
            await self.pg.checkpoint()
        except e.PostgresError as exc:
            log.warning("checkpoint after promotion failed: %s", exc)

    async def _do_ResumeAsPrimary(self, _: a.ResumeAsPrimary) -> None:
        async def resume() -> None:
            await self.pg.stop("fast")
            await self._start(primary=True, follow=None)
            log.info("resumed as primary on timeline %d", self.pg_state.timeline)

        self._background("resuming as primary", resume)

    async def _do_FollowLeader(self, act: a.FollowLeader) -> None:
        self.pg.write_config(self._parameters(), self._hba(), self._member_addr(act.leader), act.leader,
                             self.config.postgresql.use_slots)
        await self.pg.query("SELECT pg_reload_conf()")
        log.info("now following %s", act.leader)

    async def _do_ReleaseLeader(self, act: a.ReleaseLeader) -> None:
        if await self.store.release_leader(self.config.retry_timeout):
            log.warning("released leader key: %s", act.reason)

    async def _do_StopPostgres(self, act: a.StopPostgres) -> None:
        self._mark_not_writable()
        await self.pg.stop(act.mode)
        log.info("postgres stopped (%s)", act.mode)

    async def _do_PublishLeaderStatus(self, act: a.PublishLeaderStatus) -> None:
        pg = self.pg_state
        await self.store.publish_status(LeaderStatus(self.name, pg.timeline, pg.lsn), self.config.retry_timeout)
        if self.config.postgresql.use_slots:
            await self.pg.sync_slots(act.slots)

    async def _do_HandOver(self, act: a.HandOver) -> None:
        t0 = time.monotonic()
        f = self.view.failover
        log.info("switchover to %s: checkpoint, then clean stop", act.candidate)
        if f is not None and f.candidate != act.candidate:
            # Name the chosen candidate so it alone waits for our final WAL position.
            await self.store.set_failover(FailoverRequest(self.name, act.candidate), self.view.failover_revision,
                                          self.config.retry_timeout)
        await self._publish_member("switchover: checkpoint")
        await self.pg.checkpoint()  # makes the shutdown checkpoint, and so the stop, short
        self._mark_not_writable()  # /primary answers 503 before Postgres stops taking writes
        await self._publish_member("switchover: stopping postgres")
        await self.pg.stop("fast")
        final_lsn = await self.pg.shutdown_checkpoint_lsn()
        tl = self.pg_state.timeline or (self.pg.disk.primary_on_timeline or 0)
        await self.store.publish_status(LeaderStatus(self.name, tl, final_lsn), self.config.retry_timeout)
        self.pg.remember(handover_lsn=final_lsn)
        await self._publish_member(f"switchover: stopped at {final_lsn >> 32:X}/{final_lsn & 0xFFFFFFFF:X}")
        await self.store.release_leader(self.config.retry_timeout)
        self.counters["demotions"] += 1
        log.info("switchover: stopped at %X and released the leader key to %s in %.2f s",
                 final_lsn, act.candidate, time.monotonic() - t0)
        # The candidate has our shutdown checkpoint, so we can stream from it straight away; the
        # loop confirms from its history that no rewind is needed before forgetting we led.
        self._background(f"starting as replica of {act.candidate}", lambda: self._start(False, act.candidate))

    async def _do_ClearDivergence(self, act: a.ClearDivergence) -> None:
        self.pg.remember(primary_on_timeline=None, handover_lsn=None)
        log.info("rejoined without a rewind: %s", act.reason)

    async def _do_ClearFailover(self, act: a.ClearFailover) -> None:
        await self.store.clear_failover(self.view.failover_revision, self.config.retry_timeout)
        log.info("cleared the switchover request: %s", act.reason)

    async def _do_RestartPostgres(self, _: a.RestartPostgres) -> None:
        self.restart_at = None
        primary = self.pg_state.running and not self.pg_state.in_recovery
        follow = None if primary else self.pg_state.following

        async def restart() -> None:
            t0 = time.monotonic()
            if primary:
                self._mark_not_writable()
            await self.pg.stop("fast")
            await self._start(primary, follow)
            self.counters["restarts"] += 1
            log.info("restarted postgres as %s in %.1f s", "primary" if primary else "replica", time.monotonic() - t0)

        self._background("restarting", restart)

    async def _do_Reinitialize(self, act: a.Reinitialize) -> None:
        self.reinit_requested = False
        host, port = self._member_addr(act.leader)

        async def reinit() -> None:
            log.info("reinitializing: wiping the data directory and cloning from %s", act.leader)
            await self.pg.stop("immediate")
            await self.pg.basebackup(host, port)
            await self._start(primary=False, follow=act.leader)
            log.info("reinitialized from %s", act.leader)

        self._background(f"reinitializing from {act.leader}", reinit)

    async def _do_SetSyncStandbys(self, act: a.SetSyncStandbys) -> None:
        self.sync_setting = act.setting
        await self.reload()
        if act.setting in ("", "*"):
            log.warning("no synchronous standby available: %s", "commits wait (strict mode)" if act.setting
                        else "replication is asynchronous until one returns")
        else:
            log.info("synchronous_standby_names = %s", act.setting)
        self.wake()

    async def _do_WriteSyncState(self, act: a.WriteSyncState) -> None:
        state = SyncState(self.name, act.members, act.quorum)
        if await self.store.set_sync(state, self.view.sync_revision, self.config.retry_timeout):
            log.info("synchronous standbys recorded: %s", ", ".join(act.members) or "none")
        self.wake()

    async def _do_Exit(self, _: a.Exit) -> None:
        if self._job is not None:
            self._job.cancel()
        if self.lease is not None:
            try:
                await self.client.lease_revoke(self.lease, min(2.0, self.config.retry_timeout))
                log.info("revoked our lease: leader key and member record released")
            except e.DcsError as exc:
                log.warning("could not revoke our lease (%s): it expires within ttl", exc)
        self._exit = True

    # -- views for the API ----------------------------------------------------------

    def health(self) -> NodeHealth:
        now = time.monotonic()
        pg = self.pg_state
        lag = max(0, self.view.status.lsn - pg.replayed_lsn) if pg.in_recovery else 0
        return NodeHealth(
            holds_leader=self.view.leader == self.name and self.holds_lease(now), pg_running=pg.running,
            in_recovery=pg.in_recovery, streaming=pg.streaming, lag=lag, tags=self.cfg.tags.model_dump(),
            loop_age=now - self.last_loop_at,
            dcs_age=now - self.last_dcs_ok if self.last_dcs_ok is not None else float("inf"),
            ttl=self.config.ttl)

    def writes_acknowledged(self) -> bool:
        """Whether the primary can acknowledge commits now (strict synchronous mode can block)."""
        pg = self.pg_state
        return sync.writes_acknowledged(self.view, self.config, pg.sync_setting, frozenset(pg.replica_lsns))

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        pg = self.pg_state
        h = self.health()
        role = "primary" if pg.running and not pg.in_recovery else "replica" if pg.running else "uninitialized" if pg.data_dir_empty else "stopped"
        out: dict[str, Any] = {
            "name": self.name, "scope": self.cfg.scope, "state": "running" if pg.running else (self.busy or "stopped"),
            "role": role, "timeline": pg.timeline, "leader": self.view.leader,
            "holds_leader_key": h.holds_leader, "server_version": 150000,
            "dcs_last_seen": int(time.time() - (now - self.last_dcs_ok)) if self.last_dcs_ok else None,
            "pause": self.config.pause, "tags": self.cfg.tags.model_dump(), "version": _version(),
            "database_system_identifier": pg.sysid, "note": self._note,
        }
        out["pending_restart"] = self.pending_restart
        if sync.mode(self.config) != "off":
            key = self.view.sync
            out["synchronous_mode"] = sync.mode(self.config) + (" strict" if self.config.synchronous_mode_strict else "")
            out["synchronous_standbys"] = list(key.members) if key else []
            if role == "primary":
                out["synchronous_standby_names"] = pg.sync_setting
                out["synchronous_fallback_async"] = pg.sync_setting == ""
        if role == "primary":
            out["writes_acknowledged"] = self.writes_acknowledged()
        if self.restart_at:
            out["scheduled_restart"] = {"schedule": datetime.fromtimestamp(self.restart_at, timezone.utc).isoformat()}
        if role == "primary":
            out["xlog"] = {"location": pg.lsn}
            out["replication"] = self.pg.replication
        elif pg.running:
            out["xlog"] = {"received_location": pg.lsn, "replayed_location": pg.replayed_lsn,
                           "replayed_timestamp": self.pg.replayed_timestamp}
            out["replication_state"] = "streaming" if pg.streaming else "stopped"
            out["lag"] = h.lag
        return out


def _version() -> str:
    from pgha import __version__

    return __version__


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
