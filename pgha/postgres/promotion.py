"""Promoting the local standby, knowing at once that it is writable, and where its old timeline
ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pgha import errors as e
from pgha.core import timelines

Query = Callable[[str], Awaitable[list[tuple[Any, ...]]]]

LOOK_EVERY = 0.005  # seconds between looks for the end of recovery


async def promote(query: Query, limit: float = 60) -> None:
    """Promote and return once Postgres takes writes. pg_promote(true) itself looks for the end of
    recovery only every 100 ms, and writes would wait for its next look: we look every 5 ms."""
    if not (await query("SELECT pg_promote(false)"))[0][0]:
        raise e.PostgresError("pg_promote refused to signal the postmaster")
    end = time.monotonic() + limit
    while (await query("SELECT pg_is_in_recovery()"))[0][0]:
        if time.monotonic() > end:
            raise e.PostgresError(f"promotion did not complete within {limit:g} s")
        await asyncio.sleep(LOOK_EVERY)


async def switch_point(query: Query, old_timeline: int) -> int | None:
    """Where ``old_timeline`` ended, from the new timeline's history file: the exact fork that
    replicas are judged against. The position the agent last saw before promoting can be a loop
    older; a replica holding WAL between the two then counted as diverged, and pg_rewind found
    nothing to rewind, again and again (the matrix: flapping link, async)."""
    rows = await query("SELECT pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) "
                       "|| '.history')")
    return timelines.switch_point(str(rows[0][0]) if rows else "", old_timeline)
