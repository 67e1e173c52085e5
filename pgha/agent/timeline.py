"""Records the failover timeline (``pgha.core.events``): the instants the executor reports, the
first write a new primary accepts, and the events, appended to etcd beside the loop (a slow etcd
or a commit waiting for a standby never holds it up)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pgha import errors as e
from pgha.agent.heartbeat import PROBE, SETUP
from pgha.agent.jobs import Result
from pgha.core import events
from pgha.core.snapshot import Snapshot
from pgha.dcs.store import ClusterStore

log = logging.getLogger("pgha")

QueryIn = Callable[..., Awaitable[list[tuple[Any, ...]]]]
KEEP = 1000  # phase observations kept for the histogram


class Timeline:
    def __init__(self, store: ClusterStore, query_in: QueryIn) -> None:
        self.store = store
        self._query_in = query_in  # a connection of its own: a commit may wait for a standby
        self.acquired_at: float | None = None  # epoch: when this node last took the leader key
        self.observations: list[tuple[str, float]] = []
        self.recorded = 0  # events recorded by this agent
        self._crash: tuple[Snapshot, list[tuple[str, float]]] | None = None  # a crash restart under way
        self._tasks: set[asyncio.Task[None]] = set()

    def acquired(self) -> None:
        self.acquired_at = time.time()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def promoted(self, s: Snapshot, timeline: int, lsn: int, reason: str, promoted: float) -> None:
        """Record the promotion once the first write is in; the instants the loop saw on the
        monotonic clock are placed on the wall clock of its snapshot."""
        f, c = s.cluster.failover, s.cluster
        kind = "switchover" if f is not None and f.leader else "failover"
        acquired = self.acquired_at or promoted
        lost = acquired if s.leader_lost_at is None else s.wall_now - (s.now - s.leader_lost_at)
        previous = f.leader if f is not None and f.leader else c.status.leader

        def make(first_write: float) -> events.Event:
            return events.promotion(kind, s.name, previous if previous != s.name else "", timeline + 1, lsn, reason,
                                    float(s.config.ttl), lost, acquired, promoted, first_write)

        self.spawn(self.after_promotion(make, s.config.retry_timeout))

    def restart(self, s: Snapshot, primary: bool, start: Callable[[], Awaitable[Result]]) -> Callable[[], Awaitable[Result]]:
        """``start``, timed as a crash restart when the leader starts its Postgres again after it
        went down: ``down`` until the start began, ``start`` until it ran. Started as primary, the
        event is recorded then; started read-only, once it resumes as primary (``resume``)."""
        if not (s.cluster.leader == s.name and s.pg.down_since is not None):
            return start
        down = s.wall_now - (s.now - s.pg.down_since)

        async def timed() -> Result:
            began = time.time()
            result = await start()
            if result.ok:
                self._crash = (s, [("down", down), ("start", began)])
                if primary:
                    self._record_crash(time.time())
            return result

        return timed

    def resume(self, resume: Callable[[], Awaitable[Result]]) -> Callable[[], Awaitable[Result]]:
        """A leader resuming as primary: the end of a crash restart timed by ``restart``."""
        async def timed() -> Result:
            began = time.time()
            result = await resume()
            if result.ok and self._crash is not None:
                self._crash[1].append(("resume", began))
                self._record_crash(time.time())
            return result

        return timed

    def _record_crash(self, end: float) -> None:
        crash, self._crash = self._crash, None
        if crash is None:
            return
        s, marks = crash
        event = events.Event("restart", s.name, s.name, s.pg.timeline, s.pg.lsn,
                             "postgres went down on the leader and was started again in place",
                             events.phases(marks, end))
        self.spawn(self.record(event, s.config.retry_timeout))

    def stepped_down(self, kind: str, s: Snapshot, timeline: int, lsn: int, reason: str,
                     marks: list[tuple[str, float]]) -> None:
        """A demotion, or a switchover's hand-over: its phases from ``marks`` to now."""
        event = events.Event(kind, s.name, s.name, timeline, lsn, reason, events.phases(marks, time.time()))
        self.spawn(self.record(event, s.config.retry_timeout))

    async def first_write(self, timeout: float = 60.0) -> float:
        """Commit the probe row of the heartbeat table; when the commit returned (epoch)."""
        try:
            await self._query_in("postgres", PROBE, timeout=timeout)
        except e.PostgresError as exc:
            if "does not exist" not in str(exc):
                raise
            for ddl in SETUP:
                await self._query_in("postgres", ddl, timeout=timeout)
            await self._query_in("postgres", PROBE, timeout=timeout)
        return time.time()

    async def after_promotion(self, make: Callable[[float], events.Event], deadline: float) -> None:
        """Wait for the first write, then record the event ``make(first_write)`` builds."""
        try:
            event = make(await self.first_write())
        except e.PostgresError as exc:
            log.warning("failover timeline: no first write after the promotion (%s)", exc)
            return
        await self.record(event, deadline)

    async def record(self, event: events.Event, deadline: float) -> None:
        self.observations = [*self.observations, *((p.name, p.seconds) for p in event.phases)][-KEEP:]
        self.recorded += 1
        log.info("%s recorded: %s (%.2f s in all)", event.kind,
                 ", ".join(f"{p.name} {p.seconds:.2f} s" for p in event.phases), event.total)
        try:
            await self.store.append_event(event, deadline)
        except e.DcsError as exc:
            log.warning("failover timeline: could not record the %s in etcd: %s", event.kind, exc)
