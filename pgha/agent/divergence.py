"""The divergence ledger: before an old primary's diverged WAL is discarded (pg_rewind, or a
re-clone), record what it held: the LSN range and its size, the committed transactions and their
commit times, and the rows per table, decoded with pg_waldump. The report is written as JSON next
to the data directory (``<data_dir>.divergence/``) and into the failover timeline as a
``divergence`` event (``pgha divergence``). Never in the way: any failure is logged and the
rewind goes on."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from pgha import errors as e
from pgha.core import events, timelines
from pgha.core.cluster import lsn_text
from pgha.postgres import conf, waldump
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")


async def _leader_facts(dsn: str, leader_timeline: int, own_timeline: int) -> int:
    """Where the leader's history says our timeline ended: the first byte it never had."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_read_file(%s)", (f"pg_wal/{leader_timeline:08X}.history",))
        row = await cur.fetchone()
    fork = timelines.switch_point(str(row[0] if row else ""), own_timeline)
    if fork is not None:
        return fork
    raise e.PostgresError(f"timeline {own_timeline} is not in the leader's history of timeline {leader_timeline}")


async def _names(dsn_for: Callable[[str], str], relations: dict[tuple[int, int, int], dict[str, int]]) -> dict[str, Any]:
    """Relation names, resolved on the leader (the same relfilenodes unless a table was rewritten)."""
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(dsn_for("postgres"), autocommit=True) as conn:
        dbs = {int(r[0]): str(r[1]) for r in await (await conn.execute("SELECT oid, datname FROM pg_database")).fetchall()}
    for (spc, db, node), counts in sorted(relations.items()):
        name = f"{spc}/{db}/{node}"
        if db in dbs:
            async with await psycopg.AsyncConnection.connect(dsn_for(dbs[db]), autocommit=True) as conn:
                cur = await conn.execute("SELECT COALESCE(pg_filenode_relation(%s, %s), pg_filenode_relation(0, %s))"
                                         "::regclass::text", (spc, node, node))
                row = await cur.fetchone()
                if row and row[0]:
                    name = f"{dbs[db]}.{row[0]}"
        out[name] = counts
    return out


async def record(postgres: PostgresController, host: str, port: int, leader: str, leader_timeline: int,
                 own_timeline: int) -> events.Event | None:
    """Read the stopped old primary's WAL past the fork; the event to record (None: nothing was
    discarded)."""
    dsn = postgres.superuser_dsn(host, port)
    fork = await _leader_facts(dsn, leader_timeline, own_timeline)
    out = await postgres.runas.run([str(Path(postgres.settings.bin_dir) / "pg_waldump"), "-p",
                                    str(postgres.data_dir / "pg_wal"), "-t", str(own_timeline), "-s", lsn_text(fork)],
                                   timeout=600, check=False)  # it ends with an error at the end of the WAL
    d = waldump.summarize(out.splitlines())
    end = timelines.parse_lsn(d.end_lsn) if d.end_lsn else fork
    if d.transactions == 0 and end <= fork:
        return None
    creds = postgres.settings.authentication.superuser
    tables = await _names(lambda db: conf.conninfo(host, port, creds, dbname=db, connect_timeout=3), d.relations)
    report = {"leader": leader, "timeline": own_timeline, "fork_lsn": lsn_text(fork), "end_lsn": lsn_text(end),
              "bytes": end - fork, "transactions": d.transactions, "first_commit": d.first_commit,
              "last_commit": d.last_commit, "tables": tables}
    folder = Path(str(postgres.data_dir) + ".divergence")
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-tl{own_timeline}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["file"] = str(path)
    first = _commit_epoch(d.first_commit) or time.time()
    last = _commit_epoch(d.last_commit) or first
    log.warning("discarding %d transaction(s), %d bytes of WAL past %s that %s never received (%s): report in %s",
                d.transactions, end - fork, lsn_text(fork), leader,
                ", ".join(f"{t}: {c['insert']}+{c['update']}~{c['delete']}-" for t, c in tables.items()) or "no rows",
                path)
    return events.Event("divergence", postgres.name, leader, own_timeline, fork,
                        f"{d.transactions} transaction(s) discarded before rejoining {leader}",
                        events.phases([("discarded", first)], last), detail=report)


def _commit_epoch(text: str | None) -> float | None:
    """pg_waldump's commit times are UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() if text else None
