"""Replication slots on the local Postgres: the leader's (one per member, the permanent ones) and
a replica's copies of the permanent ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pgha.core.cluster import lsn_text
from pgha.core.slots import ignored
from pgha.postgres import conf

Query = Callable[..., Awaitable[list[tuple[Any, ...]]]]

_SLOTS = """SELECT slot_name, slot_type, database, plugin, active, COALESCE((restart_lsn - '0/0')::bigint, 0)
              FROM pg_replication_slots"""


async def keep(query: Query, members: frozenset[str], permanent: frozenset[str], ignore: Sequence[Any]) -> dict[str, int]:
    """Keep one physical slot per member and each permanent slot; drop other inactive physical
    slots unless ``ignore`` matches them. Returns the permanent slots' positions."""
    wanted = {conf.slot_name(m) for m in members} | set(permanent)
    rows = await query(_SLOTS)
    have = {r[0] for r in rows if r[1] == "physical"}
    for name in sorted(wanted - have):
        await query("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    for name, kind, database, plugin, active, _ in rows:
        slot = {"name": name, "type": kind, "database": database, "plugin": plugin}
        if kind == "physical" and name not in wanted and not active and not ignored(slot, ignore):
            await query("SELECT pg_drop_replication_slot(%s)", (name,))
    return {r[0]: int(r[5]) for r in rows if r[0] in permanent and r[5]}


async def copy(query: Query, positions: Mapping[str, int]) -> None:
    """On a replica: create each permanent slot missing here and advance it to the primary's
    position (Postgres caps the move at what this standby has replayed)."""
    rows = {r[0]: int(r[5]) for r in await query(_SLOTS) if r[1] == "physical"}
    for name, lsn in sorted(positions.items()):
        if name not in rows:
            await query("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
            rows[name] = 0
        if lsn > rows[name]:
            await query("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, lsn_text(lsn)))
