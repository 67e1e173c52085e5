"""PgBouncer's side of the watcher: its [databases] file and its admin console.

PAUSE returns only once every server connection was released at the end of its transaction, so
it runs on a connection of its own, in the background. PgBouncer issue #715: a RESUME sent while
a PAUSE still waits leaves that PAUSE waiting forever. Before any RESUME the pending PAUSE's
connection is closed, so no caller is left waiting on it; PgBouncer forgets a closed admin
client, and the RESUME ends the pause itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from pgha.postgres import bounded
from pgha.pooler.config import PgBouncerTarget

log = logging.getLogger("pgha.pooler")

COMMAND_TIMEOUT = 3.0  # RELOAD and RESUME answer at once; a silent console is not waited on longer


def databases_ini(databases: Mapping[str, str], host: str, port: int) -> str:
    """The [databases] section pointing every entry at ``host``:``port``."""
    lines = ["; written by pgha pooler: the cluster's primary (do not edit, it is rewritten)", "[databases]"]
    for name, extra in databases.items():
        lines.append(f"{name} = host={host} port={port}{' ' + extra if extra else ''}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, keeping its owner and mode (PgBouncer reads it as its own user)."""
    st = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if st is not None:
            os.chmod(tmp, st.st_mode & 0o777)
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PgBouncerDriver:
    def __init__(self, cfg: PgBouncerTarget) -> None:
        self.cfg = cfg
        self._pause_task: asyncio.Task[None] | None = None
        self._pause_conn: list[psycopg.AsyncConnection[Any]] = []
        # An admin connection opened ahead of the next PAUSE: logging in takes milliseconds that,
        # after a primary died, are statements failing.
        self._spare: asyncio.Task[psycopg.AsyncConnection[Any]] | None = None
        self.paused = False  # the last PAUSE returned and no RESUME followed

    @property
    def pausing(self) -> bool:
        return self._pause_task is not None

    def _connect(self) -> Any:
        return psycopg.AsyncConnection.connect(self.cfg.admin, autocommit=True, connect_timeout=2,
                                               cursor_factory=psycopg.AsyncClientCursor)

    def warm(self) -> None:
        """Have an admin connection ready for the next PAUSE (opened in the background)."""
        t = self._spare
        if t is not None and t.done() and (t.cancelled() or t.exception() is not None or t.result().closed):
            t = None
        if t is None and self._pause_task is None:
            t = asyncio.get_running_loop().create_task(self._connect())
        self._spare = t

    async def _admin_for_pause(self) -> psycopg.AsyncConnection[Any]:
        t, self._spare = self._spare, None
        if t is not None and t.done() and not t.cancelled() and t.exception() is None and not t.result().closed:
            return t.result()
        if t is not None and not t.done():
            t.cancel()
        conn: psycopg.AsyncConnection[Any] = await self._connect()
        return conn

    def drop_spare(self) -> None:
        t, self._spare = self._spare, None
        if t is None:
            return
        if not t.done():
            t.cancel()
        elif not t.cancelled() and t.exception() is None:
            bounded.close_quietly(t.result())

    async def _command(self, sql: str) -> None:
        conn: list[psycopg.AsyncConnection[Any]] = []

        async def go() -> None:
            conn.append(await self._connect())
            try:
                await conn[0].execute(sql)
            finally:
                await conn[0].close()

        await bounded.run(go, COMMAND_TIMEOUT, lambda: bounded.close_quietly(conn[0] if conn else None))

    async def point(self, host: str, port: int) -> None:
        """Rewrite the [databases] file to ``host``:``port`` and RELOAD; server connections to the
        old target are closed as they are released."""
        write_atomically(Path(self.cfg.databases_file), databases_ini(self.cfg.databases, host, port))
        await self._command("RELOAD")

    def pause(self) -> None:
        """Start a PAUSE in the background (no-op while one runs or holds)."""
        if self._pause_task is None and not self.paused:
            self._pause_task = asyncio.get_running_loop().create_task(self._pause())

    async def _pause(self) -> None:
        conn = await self._admin_for_pause()
        self._pause_conn.append(conn)
        try:
            await conn.execute("PAUSE")
        except psycopg.Error as exc:
            if "already" not in str(exc):  # "already suspended/paused": a pause we lost track of
                raise
        self.paused = True
        await conn.close()

    def pause_failed(self) -> BaseException | None:
        """The error that ended a background PAUSE (it is then forgotten: the next call retries)."""
        t = self._pause_task
        if t is None or not t.done():
            return None
        self._pause_task = None
        self._pause_conn.clear()
        return None if t.cancelled() else t.exception()

    def _abandon_pause(self) -> None:
        for conn in self._pause_conn:
            bounded.close_quietly(conn)
        self._pause_conn.clear()
        if self._pause_task is not None:
            self._pause_task.cancel()
            self._pause_task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
            self._pause_task = None

    async def resume(self) -> None:
        """End any pause: close a pending PAUSE's connection first (#715), then RESUME."""
        self._abandon_pause()
        try:
            await self._command("RESUME")
        except psycopg.Error as exc:
            if "not paused" not in str(exc):
                raise
        self.paused = False
