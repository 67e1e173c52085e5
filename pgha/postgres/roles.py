"""The replication and rewind roles, created or updated with their passwords kept out of every log.

The passwords appear in the statements, so these run on a connection of their own that logs
neither the statements nor a failing one, whatever log_statement the operator chose."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgha import errors as e
from pgha.config.model import Authentication, Credentials

_REWIND_FUNCTIONS = ("pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
                     "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)")


async def ensure(dsn: str, auth: Authentication) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("SET log_statement = 'none'")
            await conn.execute("SET log_min_error_statement = 'panic'")
            await _ensure_role(conn, auth.replication, "REPLICATION")
            if auth.rewind is not None:
                await _ensure_role(conn, auth.rewind, "")
                for fn in _REWIND_FUNCTIONS:
                    await conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(
                        sql.SQL(fn), sql.Identifier(auth.rewind.username)))
    except psycopg.Error as exc:
        raise e.PostgresError(f"could not create the replication roles: {exc.diag.message_primary or exc}") from exc


async def _ensure_role(conn: psycopg.AsyncConnection[Any], creds: Credentials, options: str) -> None:
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (creds.username,))
    verb = "ALTER" if await cur.fetchone() else "CREATE"
    stmt = sql.SQL("{} ROLE {} WITH LOGIN {} PASSWORD {}").format(
        sql.SQL(verb), sql.Identifier(creds.username), sql.SQL(options), sql.Literal(creds.password))
    await conn.execute(stmt)
