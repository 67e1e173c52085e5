"""The agent process: builds the parts (lease keeper, watched cluster, executor, loop, API),
runs them as tasks, publishes the node report, and shuts down on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import replace
from pathlib import Path

from pgha import __version__
from pgha.agent.callbacks import CallbackRunner
from pgha.agent.execute import Executor
from pgha.agent.fence import Fence
from pgha.agent.gate import PortGate
from pgha.agent.backup import BackupRunner
from pgha.agent.heartbeat import Heartbeat
from pgha.agent.watchdog import Watchdog
from pgha.agent.jobs import PostgresJobs
from pgha.agent.lease import LeaseKeeper
from pgha.agent.loop import HaLoop
from pgha.agent import reload
from pgha.agent.promise import Promise
from pgha.agent.quickstart import Adopted
from pgha.api.server import ApiContext, ApiServer
from pgha.config.model import LocalConfig
from pgha.core import lease as lease_rule
from pgha.core import report as node_report
from pgha.core import wake as wake_rule
from pgha.core.jobs import Busy, Job
from pgha.dcs.cache import WatchedCluster
from pgha.log import Repeats
from pgha.dcs.etcd import EtcdClient
from pgha.dcs.store import ClusterStore
from pgha.ops import Inbox
from pgha.postgres import guc, walreceiver
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")

# A primary that stops keeps its REST API up this long, answering 503, before it exits: a load
# balancer then marks it down on a refusal (HAProxy's checks in configs/haproxy.cfg: 500 ms apart,
# 250 ms once failing, down after two) instead of on check timeouts once its address is gone, as a
# stopped container's is, while new connections wait on that address for their connect timeout.
DRAIN_SECONDS = 1.0
FENCE_CHECK = 1.0  # seconds between two looks at whether the fence fired or died


def make_client(local: LocalConfig) -> EtcdClient:
    etcd = local.etcd
    return EtcdClient(etcd.urls(), cacert=etcd.cacert, cert=etcd.cert, key=etcd.key,
                      username=etcd.username, password=etcd.password)


class Agent:
    def __init__(self, local: LocalConfig, path: str | None = None, adopted: Adopted | None = None) -> None:
        self.local = local
        self.path = path  # the config file SIGHUP reads again
        self.adopted = adopted  # a lease the quick start already moved our leader key onto
        self._wake = asyncio.Event()
        self.client = make_client(local)
        self.store = ClusterStore(self.client, local.prefix, local.name)
        self.postgres = PostgresController(local)
        promise = Promise(Path(local.postgresql.data_dir + ".failsafe-promise"))
        self.inbox = Inbox(self.wake, promise.load(), promise.save)
        self.fence = Fence(local.postgresql.data_dir, Watchdog(local.watchdog),
                           PortGate(self.postgres.settings.listen_port, local.fence.port_gate))
        self.fence_fired = 0
        self._was_primary = False
        self._unreached = False  # the last renewal failed
        self.keeper = LeaseKeeper(self.client, lambda: self.loop.dynamic, self._renewal_changed,
                                  lambda: self.fence.extend(self.loop.valid_until(), self.loop.dynamic), self._bound,
                                  lambda lease: self.postgres.remember(lease=lease), self.postgres.disk.lease)
        self.cache = WatchedCluster(self.client, local.prefix, self._changed)
        jobs = PostgresJobs(local, self.store, self.postgres, self.keeper)
        self.callbacks = CallbackRunner(local.postgresql.callbacks, local.scope)
        self.heartbeat = Heartbeat(self.store, self.postgres.superuser_dsn(self.postgres.local_host,
                                                                           self.postgres.settings.listen_port))
        self.backups = BackupRunner(local, self.store, self.postgres)
        self.executor = Executor(jobs, self.publish, lambda: self.loop.announce(), self.wake, self.callbacks,
                                 lambda: self.loop.refresh())
        self.loop = HaLoop(local, self.keeper, self.cache, self.store, self.postgres, self.executor, self.inbox, self.fence,
                           self.publish, lambda: self._report)
        self._report = node_report.NodeReport(
            name=local.name, scope=local.scope, host=local.postgresql.host, port=local.postgresql.port,
            api_url=local.restapi.url, version=__version__, tags=local.tags.model_dump(),
            config=local.bootstrap.dcs)
        self._live, self._version = self._report, 0
        self._live_key: tuple[object, ...] = ()

    def wake(self) -> None:
        self._wake.set()

    def _bound(self, lease: int) -> bool:
        """Whether our leader key or member record is bound to ``lease`` (in the latest view)."""
        view = self.loop.state.view
        return view.member_leases.get(self.local.name) == lease or (
            view.leader == self.local.name and view.leader_lease == lease)

    def _renewal_changed(self) -> None:
        if self.keeper.ok and self._unreached:
            # The watch can stall without closing (our packets to etcd dropped, not theirs to us):
            # after an outage it reads anew. Found by the matrix: a stale view of our own expired
            # leader key made the agent try to take it over, and the real leader showed 4 s later.
            self.cache.restart()
        self._unreached = not self.keeper.ok
        self.wake()

    def _changed(self, keys: set[str]) -> None:
        if wake_rule.wakes(self.loop.state.view, self.local.name, keys):
            self.wake()

    # -- the read model ----------------------------------------------------------------

    def publish(self) -> None:
        """Rebuild the node report from the loop's state (after each loop, and when a job starts)."""
        st, pg = self.loop.state, self.postgres
        self._version += 1
        stuck = st.pg.running and st.pg.in_recovery and not st.pg.streaming
        facts = replace(pg.facts, stream_error=walreceiver.last_error(pg.log_path)) if stuck else pg.facts
        self._report = replace(
            self._report, config=self.loop.dynamic, view=st.view, pg=st.pg, busy=self.executor.busy,
            note=st.note, restart_at=self.inbox.restart_at, loop_at=self.loop.loop_at,
            replication=tuple(pg.replication), replayed_timestamp=pg.replayed_timestamp, facts=facts,
            failsafe_confirmed_at=st.failsafe_confirmed_at, failsafe_ping=self.inbox.failsafe_ping)

    def report(self) -> node_report.NodeReport:
        """The published report with the live facts: the lease keeper's, the counters and the
        operator's pending restart. Rebuilt only when one of them changed (health checks call
        this on every request)."""
        k, t = self.keeper, self.executor.tally
        key = (self._version, k.lease, k.valid_until, k.seen_at, k.renewals, k.failures, t.promotions, t.demotions,
               t.reloads, self.executor.jobs.restarts, self.fence_fired, self.inbox.restart_at, self.fence.armed,
               self.executor.timeline.recorded, self.heartbeat.ledger.last if self.heartbeat.ledger else None,
               self.fence.watchdog_state, self.fence.gate_state, sum(self.callbacks.stats.runs.values()))
        if key != self._live_key:
            self._live, self._live_key = self._merge(), key
        return self._live

    def _merge(self) -> node_report.NodeReport:
        k, t = self.keeper, self.executor.tally
        counters = node_report.Counters(
            renewals=k.renewals, renewal_failures=k.failures, max_renewal_gap=k.max_gap,
            promotions=t.promotions, promotion_seconds=sum(t.promotion_seconds),
            last_promotion_seconds=t.promotion_seconds[-1] if t.promotion_seconds else 0.0,
            demotions=t.demotions, restarts=self.executor.jobs.restarts, reloads=t.reloads,
            fence_fired=self.fence_fired)
        return replace(self._report, lease_valid_until=k.valid_until, lease_id=k.lease, dcs_seen_at=k.seen_at,
                       counters=counters, callbacks=self.callbacks.stats.snapshot(),
                       restart_at=self.inbox.restart_at, fence_armed=self.fence.armed,
                       watchdog=self.fence.watchdog_state, port_gate=self.fence.gate_state,
                       phase_seconds=tuple(self.executor.timeline.observations),
                       heartbeat=self._heartbeat())

    def _heartbeat(self) -> tuple[float, float] | None:
        ledger = self.heartbeat.ledger
        return None if ledger is None else (ledger.last, sum(v[1] for v in ledger.days.values()))

    def _leading(self) -> bool:
        """A writable primary holding the leader key: it keeps the heartbeat."""
        st = self.loop.state
        return st.view.leader == self.local.name and st.pg.writable and self.keeper.holds(time.monotonic())

    def _guard_due(self, now: float) -> bool:
        r = self._report
        return lease_rule.guard_due(self.loop.valid_until(), now, self.loop.dynamic, leader=r.view.leader == r.name,
                                    writable=node_report.postgres_up(r) and r.pg.writable, paused=r.config.pause)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        api = ApiServer(ApiContext(self.local, self.report, self.inbox, self.store, lambda: self.loop.dynamic,
                                   lambda params: guc.problems(params, self.postgres.catalog)))
        await api.start()
        if self.adopted is not None:
            a = self.adopted
            self.keeper.adopt(a.lease, a.ttl, a.retry_timeout, a.granted_at)
            log.info("took over the leader key and re-armed the fence %.3f s after start, before loading "
                     "the agent: no failover", a.took)
        await self.keeper.renew(leader=False)
        tasks = [loop.create_task(self.keeper.run(lambda: self._report.view.leader == self.local.name)),
                 loop.create_task(self.keeper.guard(self._guard_due, self.executor.fence_stop, self.loop.valid_until)),
                 loop.create_task(self.cache.run(lambda: self.loop.dynamic.retry_timeout)),
                 loop.create_task(self._postmaster_exit()), loop.create_task(self._watch_fence()),
                 loop.create_task(self.heartbeat.run(self._leading, lambda: self.loop.dynamic, lambda: self.keeper.lease)),
                 loop.create_task(self.backups.run(lambda: self.loop.state.view, lambda: self.loop.dynamic,
                                                   self._leading, lambda: self.loop.state.pg))]
        log.info("agent started (etcd %s, api %s)", ",".join(self.client.urls), self.local.restapi.listen)
        try:
            await self._turn()
        finally:
            if self.postgres.postmaster_pid() is None:
                self.fence.disarm("postgres stopped")
            for t in tasks:
                t.cancel()
            await self._drain()
            await self.callbacks.close()
            await api.stop()
            await self.postgres.disconnect()
            await self.client.close()
            log.info("agent stopped")

    async def _turn(self) -> None:
        failures = Repeats(log)
        while not self.loop.state.exit:
            self._wake.clear()
            try:
                await self.loop.run_once()
                self.heartbeat.kick()  # a new primary's first heartbeat ends a gap: no waiting
                self.backups.kick()
                failures.clear()
            except Exception as exc:  # noqa: BLE001 - one bad loop must not end the agent
                failures.error(f"HA loop failed ({type(exc).__name__}: {exc}); retrying", exc_info=True)
            if self.loop.state.exit:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(self.loop.dynamic.loop_wait,
                                                               self.loop.state.recheck or float("inf")))

    def _on_reload(self) -> None:
        new = reload.reread(self.path, self.local) if self.path else None
        if new is not None:
            self.local = self.loop.local = new
            self._report = replace(self._report, tags=new.tags.model_dump())
            self.wake()  # the member record shows the new tags at once

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: shutting down", signal.Signals(sig).name)
        if not self.loop.shutting_down:
            r = self._report
            self._was_primary = r.view.leader == self.local.name or (r.pg.running and r.pg.writable)
        self.loop.shutting_down = True
        self.wake()

    async def _drain(self) -> None:
        """See DRAIN_SECONDS: only a node that was the primary when asked to stop, and only once
        its Postgres is down, so nothing it answers is stale."""
        if not self._was_primary or self.postgres.postmaster_pid() is not None:
            return
        self._report = replace(self._report, busy=Busy(Job.STOPPING, "agent shutting down"))
        self._version += 1
        log.info("stopped being primary: answering 503 for %.1f s so load balancers route elsewhere",
                 DRAIN_SECONDS)
        await asyncio.sleep(DRAIN_SECONDS)

    async def _watch_fence(self) -> None:
        """Count firings; restart a fence that died while armed, and demote if that fails. A
        firing kills the postmaster, which wakes the loop by itself (``_postmaster_exit``)."""
        while True:
            await asyncio.sleep(FENCE_CHECK)
            fired = self.fence.newly_fired()
            if fired:
                self.fence_fired += fired
                self.wake()
            if self.fence.deadline is not None and not self.fence.alive() and not self.fence.arm(self.fence.deadline):
                self.loop.state = replace(self.loop.state, fence_ok=False)
                self.wake()

    async def _postmaster_exit(self) -> None:
        while True:
            await self.postgres.exited.wait()
            self.postgres.exited.clear()
            if not self.loop.shutting_down:
                log.warning("postmaster exited")
                self.wake()


__all__ = ["Agent"]
