"""``pgha restore``: restore the pgBackRest archive into a fresh directory, recover it to a target
and say what the recovery followed. The copy runs on a port of its own with archiving off, apart
from the cluster; it is stopped afterwards unless asked to keep running."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgha import errors as e
from pgha.config.model import LocalConfig
from pgha.core import pitr
from pgha.postgres import conf
from pgha.postgres.runas import RunAs


@dataclass(frozen=True)
class Restored:
    data_dir: str
    port: int
    target: str
    followed_timeline: int  # the timeline whose WAL was replayed last
    ended_at: str  # where recovery stopped on it
    timeline: int  # the timeline the copy opened
    last_transaction: str  # the commit time of the last transaction replayed ("" when none)
    seconds: float

    def body(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def restore(local: LocalConfig, stanza: str, config_path: str, into: str, target: pitr.Target,
                  port: int, backup_set: str = "", keep_running: bool = False, timeout: float = 3600) -> Restored:
    pg = local.postgresql
    runas, d, t0 = RunAs(pg.os_user), Path(into), time.monotonic()
    if d.exists() and any(d.iterdir()):
        raise e.PostgresError(f"{into} is not empty: restore into a fresh directory")
    runas.make_private_dir(d)
    await runas.run(pitr.restore_argv(stanza, config_path, into, target, backup_set), timeout=timeout)
    log_path = f"{into}.log"
    runas.write_file(log_path, "")
    options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c primary_conninfo='' -c archive_mode=off "
               "-c hot_standby=on -c synchronous_standby_names='' -c cluster_name=pgha-restore")
    try:
        await runas.run([str(Path(pg.bin_dir) / "pg_ctl"), "-D", into, "-l", log_path, "-o", options, "-w",
                         "-t", str(int(timeout)), "start"], timeout=timeout + 10)
    except e.PostgresError as exc:
        raise e.PostgresError(f"the restored copy did not start ({exc}): {_tail(log_path)}") from None
    dsn = conf.conninfo("127.0.0.1", port, pg.authentication.superuser, dbname="postgres", connect_timeout=3)
    try:
        last = await _wait_promoted(dsn, log_path, t0 + timeout)
        history = {p.name: p.read_text() for p in (d / "pg_wal").glob("*.history")}
        path = pitr.followed(history)
        if path is None:
            raise e.PostgresError(f"recovery of {into} opened no new timeline (no history file in pg_wal)")
        return Restored(into, port, target.describe(), path.timeline, path.ended_at, path.opened, last,
                        round(time.monotonic() - t0, 3))
    finally:
        if not keep_running:
            await runas.run([str(Path(pg.bin_dir) / "pg_ctl"), "-D", into, "-m", "fast", "-w", "stop"], timeout=120,
                            check=False)


async def _wait_promoted(dsn: str, log_path: str, deadline: float) -> str:
    """Wait until recovery reached the target and promoted; the last replayed commit's time."""
    while time.monotonic() < deadline:
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                cur = await conn.execute("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()")
                row = await cur.fetchone()
                if row is not None and not row[0]:
                    return row[1].isoformat() if row[1] is not None else ""
        except psycopg.OperationalError:
            if "FATAL" in _tail(log_path) and "recovery" in _tail(log_path):
                raise e.PostgresError(f"recovery failed: {_tail(log_path)}") from None
        await asyncio.sleep(0.5)
    raise e.PostgresError(f"recovery did not reach its target in time: {_tail(log_path)}")


def _tail(path: str) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line for line in lines[-5:] if line.strip())
