"""The leader's heartbeat: one row committed every ``heartbeat_interval`` seconds on a connection
of its own, each commit counted in the availability ledger (``pgha.core.availability``), which
is stored in etcd (``availability``, only while we hold the leader key) every ``FLUSH`` seconds
and at once after a gap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pgha import errors as e
from pgha.core import availability
from pgha.core.settings import ClusterSettings
from pgha.dcs.store import ClusterStore
from pgha.log import Repeats

log = logging.getLogger("pgha")

FLUSH = availability.FLUSH
IDLE = 1.0  # seconds between two looks at whether this node leads, unless kicked (``kick``)
SETUP = ("CREATE SCHEMA IF NOT EXISTS pgha",
         "CREATE TABLE IF NOT EXISTS pgha.heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL)")
BEAT = "INSERT INTO pgha.heartbeat VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = now()"
# A new primary's first-write probe (``agent.timeline``) has a row of its own: the heartbeat's row
# must still hold the old primary's last heartbeat when the new one's first heartbeat reads it.
PROBE = "INSERT INTO pgha.heartbeat VALUES (2, now()) ON CONFLICT (id) DO UPDATE SET at = now()"
LAST = "SELECT extract(epoch FROM at)::float8 FROM pgha.heartbeat WHERE id = 1"


class Heartbeat:
    def __init__(self, store: ClusterStore, dsn: str) -> None:
        self.store, self.dsn = store, dsn
        self.ledger: availability.Ledger | None = None  # while we lead and beat
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._previous: float | None = None  # the last heartbeat in the table when we began
        self._beat_at: float | None = None  # monotonic time of our last heartbeat in this series
        self._flushed = 0.0
        self._errors = Repeats(log)
        self._kicked = asyncio.Event()

    def kick(self) -> None:
        """The HA loop ran: leadership may have just begun, look again now."""
        self._kicked.set()

    async def _idle(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._kicked.wait(), IDLE)
        self._kicked.clear()

    async def run(self, leading: Callable[[], bool], config: Callable[[], ClusterSettings],
                  lease: Callable[[], int | None]) -> None:
        while True:
            interval = config().heartbeat_interval
            if interval <= 0 or not leading():
                await self._stop()
                await self._idle()
                continue
            started = time.time()
            try:
                await self._beat(interval, lease(), config().retry_timeout)
                self._errors.clear()
            except (psycopg.Error, e.DcsError, OSError) as exc:
                self._errors.error(f"heartbeat failed: {exc}")
                await self._stop(keep_ledger=True)
            await asyncio.sleep(max(0.05, interval - (time.time() - started)))

    async def _beat(self, interval: float, lease: int | None, deadline: float) -> None:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=3)
            for statement in SETUP:
                await self._conn.execute(statement)
            row = await (await self._conn.execute(LAST)).fetchone()
            self._previous = float(row[0]) if row else None
        if self.ledger is None:
            kv = await self.store.client.get(self.store.key("availability"), deadline)
            self.ledger = availability.Ledger.from_json(kv.value) if kv is not None else availability.Ledger()
        await self._conn.execute(BEAT)
        committed, mono = time.time(), time.monotonic()
        if self._previous is None:  # our own last beat came before: wall and monotonic clocks agree
            elapsed = mono - self._beat_at if self._beat_at is not None else None
            self.ledger, step = availability.rebase(self.ledger, committed, elapsed)
            if step:
                log.warning("the wall clock stepped %+.1f s since the last heartbeat: not counted as a write gap", step)
        self._beat_at = mono
        before = len(self.ledger.incidents)
        self.ledger = availability.beat(self.ledger, committed, self._previous, interval)
        self._previous = None
        if self.ledger.incidents and len(self.ledger.incidents) != before:
            gap = self.ledger.incidents[-1]
            log.warning("writes were unavailable for %.1f s (heartbeat gap)", gap.down)
        if lease is not None and (committed - self._flushed >= FLUSH or len(self.ledger.incidents) != before):
            await self.store.set_availability(self.ledger.to_json(), lease, deadline)
            self._flushed = committed

    async def _stop(self, keep_ledger: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                pass
        self._beat_at = None
        if not keep_ledger:
            self.ledger, self._flushed = None, 0.0
