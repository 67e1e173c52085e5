"""Promoting the local standby, and knowing at once that it is writable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pgha import errors as e

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
