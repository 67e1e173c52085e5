"""The cluster's keys kept current by one watch, so that an idle loop costs etcd nothing.

Read the prefix once, then apply the watch's events; read again whenever the stream ends
(a broken connection, a compaction past our revision, a cancelled watch). ``fresh_on`` says
whether the cache may stand in for a read: the stream runs, on top of a full read, from the
endpoint that last answered us. A member that lost its quorum stops delivering events without
closing the stream, but it cannot renew a lease either, so the client moves to another endpoint
and the cache is no longer fresh there until it reconnects. A stream can also stall on a healthy
member (a NAT or proxy that lost one half of the connection): ``current`` compares the cache with
one keys-only read at most every few seconds, and reads again when the stream missed a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pgha import errors as e
from pgha.config.load import parse_stored_config
from pgha.core.cluster import ClusterView, parse_cluster
from pgha.dcs.etcd import EtcdClient, KeyValue, WatchEvent

log = logging.getLogger(__name__)

DELIVERY = 1.0  # seconds an event the store already shows may take to arrive on a live stream


class WatchedCluster:
    def __init__(self, client: EtcdClient, prefix: str, on_change: Callable[[set[str]], None]) -> None:
        self.client = client
        self.prefix = prefix
        self.on_change = on_change  # called with the changed keys (relative to the prefix)
        self._kvs: dict[str, KeyValue] = {}
        self.revision = 0
        self.endpoint: str | None = None  # the endpoint streaming to us, None while not streaming
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._checked_at = 0.0  # monotonic time of the last comparison with a read

    def fresh_on(self, endpoint: str) -> bool:
        return self.endpoint == endpoint

    def view(self) -> ClusterView:
        return parse_cluster(self._kvs.values(), self.prefix, self.revision, parse_config=parse_stored_config)

    async def caught_up(self, revision: int, timeout: float) -> bool:
        """Wait until the cache reflects the store at ``revision`` (our own write); False on timeout."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout):
                while self.revision < revision and self.endpoint is not None:
                    self._advanced.clear()
                    await self._advanced.wait()
        return self.revision >= revision

    async def current(self, revision: int, deadline: float, every: float) -> bool:
        """Whether the cache may stand in for a read now: it shows our own write at ``revision``,
        and a keys-only read (at most every ``every`` seconds) finds no change the stream did not
        deliver. A replica on a stalled stream would never see the leader key expire."""
        if not await self.caught_up(revision, deadline):
            return False
        if time.monotonic() - self._checked_at < every:
            return True
        try:
            kvs, at = await self.client.get_prefix(self.prefix, deadline, keys_only=True)
        except e.DcsError:
            return False
        keys = {kv.key: kv.mod_revision for kv in kvs}
        self._checked_at = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(DELIVERY):
                while self.endpoint is not None and self.revision < at and self._revisions() != keys:
                    self._advanced.clear()
                    await self._advanced.wait()
                return self.endpoint is not None
        cached = self._revisions()
        missed = sorted(k[len(self.prefix):] for k in keys.keys() | cached.keys() if keys.get(k) != cached.get(k))
        log.warning("watch: the stream from %s stalled without closing (it never delivered changes to %s "
                    "by revision %d): reading again", self.endpoint, ", ".join(missed), at)
        self.restart()
        return False

    def _revisions(self) -> dict[str, int]:
        return {k: kv.mod_revision for k, kv in self._kvs.items()}

    def restart(self) -> None:
        """Drop the stream and read again (from the endpoint the client uses now); not fresh from
        now on, not only once the stream's task ended."""
        self.endpoint = None
        if self._task is not None:
            self._task.cancel()

    async def run(self, read_deadline: Callable[[], float]) -> None:
        """Keep the cache current until cancelled; never raises."""
        while True:
            self._task = asyncio.create_task(self._follow(read_deadline()))
            try:
                await asyncio.wait([self._task])
                exc = None if self._task.cancelled() else self._task.exception()
                if isinstance(exc, e.DcsError):
                    log.debug("watch: %s", exc)
                elif exc is not None:
                    log.error("watch failed: %r", exc)
            finally:
                self._task.cancel()
                self.endpoint = None
                self._advanced.set()
            await asyncio.sleep(0.2)

    async def _follow(self, deadline: float) -> None:
        kvs, revision = await self.client.get_prefix(self.prefix, deadline)
        self._kvs = {kv.key: kv for kv in kvs}
        self.revision = revision
        self.on_change({kv.key[len(self.prefix):] for kv in kvs} | {"leader"})
        endpoint = self.client.endpoint
        async for events in self.client.watch_prefix(self.prefix, revision + 1):
            if self.endpoint is None:
                self.endpoint = endpoint
            if events:
                self._apply(events)
            if self.client.endpoint != endpoint:
                log.info("watch: etcd endpoint changed to %s, reading again there", self.client.endpoint)
                return

    def _apply(self, events: list[WatchEvent]) -> None:
        for ev in events:
            if ev.kind == "DELETE":
                self._kvs.pop(ev.key, None)
            elif ev.kv is not None:
                self._kvs[ev.key] = ev.kv
            self.revision = max(self.revision, ev.revision)
        self._advanced.set()
        self.on_change({ev.key[len(self.prefix):] for ev in events})
