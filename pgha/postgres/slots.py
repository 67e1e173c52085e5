"""Replication slots on the local Postgres: the leader's (one per member, the permanent ones) and
a replica's copies of the permanent ones (how a replica gets a logical copy: ``jobs``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from pgha import errors as e
from pgha.core.cluster import lsn_text
from pgha.core.slots import ignored
from pgha.postgres import bounded, conf
from pgha.postgres.runas import RunAs

Query = Callable[..., Awaitable[list[tuple[Any, ...]]]]
QueryIn = Callable[..., Awaitable[list[tuple[Any, ...]]]]  # (database, text, params): in another database

log = logging.getLogger("pgha")

# A physical slot's position is where it holds WAL from; a logical slot's, what its consumer confirmed.
_SLOTS = """SELECT slot_name, slot_type, database, plugin, active, COALESCE((restart_lsn - '0/0')::bigint, 0),
                   COALESCE((confirmed_flush_lsn - '0/0')::bigint, 0)
              FROM pg_replication_slots"""
Rows = list[tuple[Any, ...]]


async def read(query: Query) -> Rows:
    """Every slot here, read once for ``keep`` and ``keep_logical``."""
    return await query(_SLOTS)


async def keep(query: Query, rows: Rows, members: frozenset[str], permanent: frozenset[str],
               ignore: Sequence[Any]) -> dict[str, int]:
    """Keep one physical slot per member and each permanent slot; drop other inactive physical
    slots unless ``ignore`` matches them. Returns the permanent slots' positions."""
    wanted = {conf.slot_name(m) for m in members} | set(permanent)
    have = {r[0] for r in rows if r[1] == "physical"}
    for name in sorted(wanted - have):
        await query("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    for name, kind, database, plugin, active, *_ in rows:
        slot = {"name": name, "type": kind, "database": database, "plugin": plugin}
        if kind == "physical" and name not in wanted and not active and not ignored(slot, ignore):
            await query("SELECT pg_drop_replication_slot(%s)", (name,))
    return {r[0]: int(r[5]) for r in rows if r[0] in permanent and r[5]}


async def create_missing(query: Query, members: frozenset[str]) -> None:
    """A standby about to be promoted: a physical slot for each member that has none, before the
    members re-point here and ask for it (a standby may hold physical slots; ``keep`` tidies up
    once it leads)."""
    have = {r[0] for r in await query(_SLOTS) if r[1] == "physical"}
    for name in sorted({conf.slot_name(m) for m in members} - have):
        await query("SELECT pg_create_physical_replication_slot(%s, true)", (name,))


async def tend(query: Query, positions: Mapping[str, int], drop: Sequence[str] = ()) -> None:
    """On a replica: create each permanent slot missing here and advance it to the primary's
    position (Postgres caps the move at what this standby has replayed); drop ``drop``, idle
    slots left from a time as primary, which would hold this replica's WAL for ever."""
    for name in drop:
        with contextlib.suppress(e.PostgresError):  # taken meanwhile (a cascading standby): kept
            await query("SELECT pg_drop_replication_slot(%s)", (name,))
            log.info("dropped replication slot %s, left from when this node was primary: it held WAL here", name)
    rows = {r[0]: int(r[5]) for r in await query(_SLOTS) if r[1] == "physical"}
    for name, lsn in sorted(positions.items()):
        if name not in rows:
            await query("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
            rows[name] = 0
        if lsn > rows[name]:
            await query("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, lsn_text(lsn)))


async def keep_logical(query: Query, query_in: QueryIn, rows: Rows,
                       specs: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """As primary: keep each permanent logical slot (name, database, plugin); one that exists for
    another database or plugin is recreated if no consumer holds it. Returns their confirmed
    positions (a slot just created shows from the next loop)."""
    logical = {r[0]: r for r in rows if r[1] == "logical"}
    for name, database, plugin in specs:
        row = logical.get(name)
        if row is not None and (row[2], row[3]) != (database, plugin):
            if row[4]:
                log.warning("logical slot %s is for %s/%s, the config says %s/%s; a consumer is using it: left as it is",
                            name, row[2], row[3], database, plugin)
                continue
            await query("SELECT pg_drop_replication_slot(%s)", (name,))
            log.warning("logical slot %s was for %s/%s, the config says %s/%s: recreating it",
                        name, row[2], row[3], database, plugin)
            row = None
        if row is None:
            await query_in(database, "SELECT pg_create_logical_replication_slot(%s, %s)", (name, plugin))
            log.info("created permanent logical slot %s (%s in database %s)", name, plugin, database)
    wanted = {n for n, _, _ in specs}
    return {n: int(r[6]) for n, r in logical.items() if n in wanted and r[6]}


async def advance_logical(query: Query, query_in: QueryIn, targets: Sequence[tuple[str, str, int]]) -> None:
    """On a replica: advance logical copies (name, database, position) in their databases. A copy
    that needs WAL this standby no longer has can never advance: it is dropped, to be copied
    again (``read_states``, ``copy_problem``) once the primary's slot has moved on."""
    for name, database, lsn in targets:
        try:
            await query_in(database, "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (name, lsn_text(lsn)))
        except e.PostgresError as exc:
            if "has already been removed" not in str(exc):
                raise
            await query("SELECT pg_drop_replication_slot(%s)", (name,))
            log.warning("the copy of logical slot %s needs WAL this replica no longer has: dropped, to be "
                        "copied again from the primary", name)


async def read_states(dsn: str, names: Sequence[str]) -> dict[str, tuple[bytes, int]]:
    """The state files of logical slots ``names`` on the primary at ``dsn`` and the WAL position
    each needs from (``restart_lsn``), read over SQL as a superuser (``pg_read_binary_file``)."""
    opened = bounded.Opened()

    async def work() -> dict[str, tuple[bytes, int]]:
        async with opened.add(await psycopg.AsyncConnection.connect(dsn, autocommit=True)) as conn:
            cur = await conn.execute(
                "SELECT slot_name, pg_read_binary_file('pg_replslot/' || slot_name || '/state'),"
                "       COALESCE((restart_lsn - '0/0')::bigint, 0)"
                "  FROM pg_replication_slots WHERE slot_type = 'logical' AND slot_name = ANY(%s)"
                "   AND NOT pg_is_in_recovery()", (list(names),))
            return {str(r[0]): (bytes(r[1]), int(r[2])) for r in await cur.fetchall()}

    try:
        return await bounded.run(work, 10, opened.close)
    except (psycopg.Error, TimeoutError) as exc:
        raise e.PostgresError(f"could not read the logical slots {', '.join(names)} on the primary: {exc}") from exc


async def oldest_wal(query: Query) -> int:
    """Where the oldest WAL segment in this node's pg_wal starts (0: none there)."""
    rows = await query("SELECT min(name), (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')"
                       "  FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'")
    name, size = rows[0]
    return 0 if name is None else (int(name[8:16], 16) << 32) + int(name[16:24], 16) * int(size)


def copy_problem(names: Sequence[str], states: Mapping[str, tuple[bytes, int]], oldest: int) -> str | None:
    """Why the slots cannot be copied now (None: they can). A copy needs WAL from the slot's
    ``restart_lsn`` on: if this standby no longer has it, the copy could never advance; it is
    copied once the slot's consumer has moved it on."""
    missing = sorted(set(names) - set(states))
    if missing:
        return f"the primary has no logical slot {', '.join(missing)} (any more)"
    short = sorted(n for n, (_, restart) in states.items() if restart < oldest)
    if short:
        return (f"logical slot {', '.join(short)} needs WAL from {lsn_text(min(states[n][1] for n in short))} on, which "
                f"this replica no longer has (it has WAL from {lsn_text(oldest)}): copied once its consumer moves it on")
    return None


def install_states(runas: RunAs, data_dir: Path, states: Mapping[str, tuple[bytes, int]]) -> None:
    """Write logical slots' state files into a stopped data directory: Postgres loads them at its
    next start."""
    for name, (data, _) in states.items():
        d = data_dir / "pg_replslot" / name
        runas.remove_tree(d)
        runas.make_private_dir(d)
        runas.write_file(d / "state", data, durable=True)
