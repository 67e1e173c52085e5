"""Client sessions on the local Postgres, as a hand-over sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# Statements running inside a transaction, of clients (not of pgha itself: the agent and its
# helpers name themselves "pgha..."). Only the running ones: cancelling is harmless to a session
# between statements, and ending one that is idle in a transaction would close its connection.
# Materialized, so that the cancel runs only on the rows chosen (quals may be reordered by cost).
CANCEL_OPEN = """
WITH open AS MATERIALIZED (
  SELECT pid FROM pg_stat_activity
   WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
     AND left(application_name, 4) <> 'pgha'
     AND xact_start IS NOT NULL AND state = 'active')
SELECT pid FROM open WHERE pg_cancel_backend(pid)
"""

Query = Callable[[str], Awaitable[list[tuple[Any, ...]]]]


async def cancel_open_transactions(query: Query) -> list[int]:
    """Cancel the running statements of open client transactions; the pids signalled."""
    return [int(r[0]) for r in await query(CANCEL_OPEN)]
