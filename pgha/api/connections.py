"""The API's connections, kept within bounds: at most ``limit`` open (below the process' file
limit, so neither accept nor the agent's own Postgres and etcd connections ever fail for want of a
descriptor), and none idle for long. A new connection at the limit evicts the longest-idle one,
so a flood of idle clients can never keep HAProxy's health checks out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pgha")


class _Guarded(asyncio.Protocol):
    """Forwards to aiohttp's protocol; records when data last came in."""

    def __init__(self, pool: ConnectionPool, inner: asyncio.Protocol) -> None:
        self.pool, self.inner = pool, inner
        self.transport: asyncio.Transport | None = None
        self.last_data = 0.0  # 0: nothing received yet
        self.opened = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.admit(self)
        self._timer = asyncio.get_running_loop().call_later(self.pool.first_request_timeout, self._silent)
        self.inner.connection_made(transport)

    def _silent(self) -> None:
        if not self.last_data and self.transport is not None:
            self.transport.abort()  # connected but never said anything

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.pool.release(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def idle_since(self) -> float:
        return self.last_data or self.opened


class ConnectionPool:
    def __init__(self, limit: int, first_request_timeout: float = 10.0) -> None:
        self.limit = limit
        self.first_request_timeout = first_request_timeout
        self.open: set[_Guarded] = set()
        self.evicted = 0

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, factory())

    def admit(self, conn: _Guarded) -> None:
        if len(self.open) >= self.limit:
            oldest = min(self.open, key=lambda c: c.idle_since())
            if oldest.transport is not None:
                oldest.transport.abort()
            self.open.discard(oldest)
            self.evicted += 1
            if self.evicted in (1, 10, 100) or self.evicted % 1000 == 0:
                log.warning("REST API at its limit of %d connections: closed the longest idle (%d so far)",
                            self.limit, self.evicted)
        self.open.add(conn)

    def release(self, conn: _Guarded) -> None:
        self.open.discard(conn)
