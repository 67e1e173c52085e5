"""The HA loop: observe, decide, execute, fold the results into the next snapshot.

The cluster view comes from the watched cache when it streams from the endpoint that renews our
lease, else from one read; the lease comes from the lease keeper. Nothing here chooses what to do."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from pgha import errors as e
from pgha.agent.execute import Executor
from pgha.agent.fence import Fence
from pgha.agent.jobs import Result
from pgha.agent.lease import LeaseKeeper
from pgha.agent.settings import StoredSettings
from pgha.agent.state import LoopState, fold, since
from pgha.config.model import LocalConfig
from pgha.core import failsafe, lease, namesake, report
from pgha.core.actions import Decision
from pgha.core.cluster import ClusterView
from pgha.core.decide import decide
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import PgState, Snapshot
from pgha.dcs.cache import WatchedCluster
from pgha.dcs.store import ClusterStore
from pgha.log import Repeats
from pgha.ops import Inbox
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")


class HaLoop:
    def __init__(self, local: LocalConfig, keeper: LeaseKeeper, cache: WatchedCluster, store: ClusterStore,
                 postgres: PostgresController, executor: Executor, inbox: Inbox, fence: Fence,
                 publish: Callable[[], None], current: Callable[[], report.NodeReport]) -> None:
        self.local, self.keeper, self.cache, self.store = local, keeper, cache, store
        self._address = (local.postgresql.host, local.postgresql.port)  # (``core.namesake``)
        self.postgres, self.executor, self.inbox, self.fence = postgres, executor, inbox, fence
        self._publish, self._current = publish, current  # rebuild the report from this loop; the report as published
        self.state, self.shutting_down, self.loop_at, self.failures = LoopState(), False, time.monotonic(), Repeats(log)
        self.stored = StoredSettings(local.bootstrap.dcs, local.postgresql.data_dir + ".cluster-config.json")

    @property
    def dynamic(self) -> ClusterSettings:
        return self.stored.current(self.state.view)

    async def run_once(self) -> None:
        view = await self._read_view()
        if view is not None:
            self.stored.follow(view)
            if view.config is not None and self.keeper.needs_regrant(view.config):
                self.state = replace(self.state, view=view)  # the keeper reads the new ttl from here
                await self.keeper.renew(view.leader == self.local.name)  # before deciding under it
        pg = await self.postgres.observe(self.state.pg, time.monotonic(), lease.observe_timeout(self.dynamic))
        self.executor.settle()
        snap = self._snapshot(time.monotonic(), view, pg)
        decision = decide(snap)
        if decision.note != self.state.note:
            log.info("%s", decision.note,
                     extra={"kind": "decision", "actions": [type(a).__name__ for a in decision.actions]})
        self.state = replace(self.state, fence_ok=self.fence.follow(snap, decision.actions, self.valid_until()))
        results = []
        for action in decision.actions:
            try:
                results.append(await self.executor.execute(action, snap))
            except (e.PghaError, OSError) as exc:
                self.failures.error(f"{type(action).__name__} failed: {exc}")
                break
        if len(results) == len(decision.actions):
            self.failures.clear()
        self.state, self.loop_at = self._fold(snap, decision, results), time.monotonic()
        self._publish()
        if view is not None and not self.state.exit:
            await self.announce()
        if any(r.wake for r in results):
            self.inbox.wake()

    async def refresh(self) -> None:
        """Observe Postgres again and republish the report (after a promotion, mid-loop)."""
        pg = await self.postgres.observe(self.state.pg, time.monotonic(), lease.observe_timeout(self.dynamic))
        self.state = replace(self.state, pg=pg)
        self._publish()

    async def _read_view(self) -> ClusterView | None:
        """The cluster now, or None when etcd cannot vouch for it (our last renewal failed)."""
        if not self.keeper.ok:
            return None
        endpoint = self.store.client.endpoint
        if self.cache.fresh_on(endpoint):
            if await self.cache.current(self.store.client.write_revision, self._deadline(), self.dynamic.loop_wait):
                return self.cache.view()
        elif self.cache.endpoint is not None:
            self.cache.restart()
        try:
            return await self.store.load(self._deadline())
        except e.DcsError as exc:
            log.warning("etcd: %s", exc)
            return None

    def _snapshot(self, now: float, view: ClusterView | None, pg: PgState) -> Snapshot:
        st = self.state
        cluster = view if view is not None else st.view
        lost, empty, asked = st.leader_lost_at, st.initialize_empty_since, st.failover_seen_at
        if view is not None:  # since when each holds, as of this read
            lost, empty = since(lost, now, view.leader is None), since(empty, now, view.initialize == "")
            asked = since(asked, now, view.failover is not None)
        if pg.running:
            pg = replace(pg, down_since=None)
        self.state = replace(st, view=cluster, pg=pg, leader_lost_at=lost, initialize_empty_since=empty,
                             failover_seen_at=asked)
        return Snapshot(
            now=now, name=self.local.name, tags=self.local.tags, config=self.dynamic, cluster=cluster,
            dcs_ok=view is not None, pg=pg, lease_valid_until=self.keeper.valid_until,
            lease_renewed_at=self.keeper.seen_at, lease_id=self.keeper.lease, leader_lost_at=lost,
            own_leases=self.keeper.own_leases(), started_at=self.keeper.started_at, address=self._address,
            failover_seen_at=asked, shutting_down=self.shutting_down, busy=self.executor.busy, wall_now=time.time(),
            restart_at=self.inbox.restart_at, reinit_requested=self.inbox.reinit_requested,
            reload_requested=self.inbox.reload_requested, applied_parameters=st.applied_parameters,
            chosen_sync=st.chosen_sync, fence_ok=st.fence_ok, fence_problem=self.fence.problem,
            peer_positions=st.peer_positions, peers_asked=st.peers_asked, peers_refused=st.peers_refused,
            peers_asked_at=st.peers_asked_at, initialize_empty_since=empty, failsafe_asked_at=st.failsafe_asked_at,
            failsafe_confirmed_at=st.failsafe_confirmed_at, failsafe_ping=self.inbox.failsafe_ping)

    def _fold(self, snap: Snapshot, decision: Decision, results: list[Result]) -> LoopState:
        finished, self.executor.finished = self.executor.finished, []
        return fold(self.state, snap, decision.note, [*results, *finished], self.inbox, decision.recheck)

    async def announce(self) -> None:
        """Publish our member record if it differs from etcd's, never over a namesake's (``core.namesake``)."""
        if not namesake.may_publish(self.state.view, self.local.name, self.keeper.lease, self.keeper.own_leases(),
                                    self._address):
            return
        await self.store.publish_member_if_changed(report.member(self._current(), time.time()), self.state.view,
                                                   self.keeper.lease, self.dynamic, self._deadline())

    def valid_until(self) -> float | None:
        """Until when this node's primacy may last, by our clock: its lease, or in failsafe mode the last round
        every member confirmed (``core.failsafe``), whichever is later; the fence stops Postgres by then."""
        lease_until = self.keeper.valid_until
        until = failsafe.valid_until(self.state.failsafe_confirmed_at, self.dynamic) \
            if failsafe.enabled(self.dynamic) else None
        return max((t for t in (lease_until, until) if t is not None), default=None)

    def _deadline(self) -> float:
        return self.keeper.deadline(leader=self.state.view.leader == self.local.name)
