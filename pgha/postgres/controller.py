"""Start, stop, promote, clone and rewind the local Postgres, and observe its state.

The controller does what it is told; it never decides. Each method either finishes its job or
raises PostgresError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgha import errors as e
from pgha.config.model import LocalConfig
from pgha.core.archive import ArchiveState
from pgha.core.report import PgFacts
from pgha.core.snapshot import PgState
from pgha.postgres import bounded, conf, guc, installed, processes, promotion, roles, startup, walcut
from pgha.postgres.memory import DiskState, Memory
from pgha.postgres.probe import STATE_QUERY
from pgha.postgres.runas import RunAs

log = logging.getLogger(__name__)


class PostgresController:
    def __init__(self, local: LocalConfig) -> None:
        self.name = local.name
        self.settings = local.postgresql
        self.runas = RunAs(self.settings.os_user)
        self.data_dir = Path(self.settings.data_dir)
        self.state_path = self.data_dir.with_name(self.data_dir.name + ".pgha.json")
        self.log_path = str(self.data_dir.with_name(self.data_dir.name + ".postgres.log"))
        self.passfile = str(self.data_dir.with_name(self.data_dir.name + ".pgpass"))
        self.memory = Memory(self.state_path)
        self._proc: asyncio.subprocess.Process | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.exited = asyncio.Event()  # set when the postmaster we started exits
        self._sysid: str | None = None
        self.start_failed_at: float | None = None  # (``PgState.start_failed_at``)
        self.rewound_onto: int | None = None  # (``PgState.rewound_onto``); an agent restart forgets it
        self.replication: list[dict[str, Any]] = []  # pg_stat_replication rows, as last observed
        self.replayed_timestamp: str | None = None
        self.facts = PgFacts()  # what the status body reports and the decision does not need
        self.installed = installed.InstalledVersion(Path(self._bin("postgres")))  # after a package update
        self.catalog: dict[str, guc.Setting] | None = None  # pg_settings, read once

    # -- bookkeeping -------------------------------------------------------------------

    @property
    def disk(self) -> DiskState:
        return self.memory.state

    def remember(self, **changes: Any) -> None:
        self.memory.remember(**changes)

    def _bin(self, name: str) -> str:
        return str(Path(self.settings.bin_dir) / name)

    @property
    def local_host(self) -> str:
        h = self.settings.listen_host
        return "127.0.0.1" if h in ("", "*", "0.0.0.0") else h.split(",")[0]

    def _superuser_dsn(self, host: str | None = None, port: int | None = None) -> str:
        return conf.conninfo(host or self.local_host, port or self.settings.listen_port,
                             self.settings.authentication.superuser, dbname="postgres", connect_timeout=3)

    def data_dir_empty(self) -> bool:
        return not (self.data_dir / "PG_VERSION").exists()

    # -- observation -------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        return processes.running_postmaster(self.data_dir)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # named, so that the client sessions a draining replica waits for leave it out
            self._conn = await psycopg.AsyncConnection.connect(self._superuser_dsn(), autocommit=True,
                                                               application_name="pgha agent")
        return self._conn

    async def query(self, text: str | sql.Composed, params: tuple[Any, ...] = (),
                    timeout: float = 10.0) -> list[tuple[Any, ...]]:
        """Run one statement on the agent's connection, within ``timeout`` seconds
        (PostgresTimeout past it, ``postgres.bounded``). A statement that times out leaves its
        connection unusable, so the connection is thrown away, never reused: a stuck connection
        must not stall the HA loop's next query."""
        async def work() -> list[tuple[Any, ...]]:
            conn = await self._connection()
            async with conn.cursor() as cur:
                await cur.execute(text, params)
                return await cur.fetchall() if cur.description else []

        try:
            return await bounded.run(work, timeout, self._drop_connection)
        except psycopg.Error as exc:
            self._drop_connection()
            if bounded.timed_out(exc):
                raise e.PostgresTimeout(f"no answer: {exc}") from exc
            raise e.PostgresError(f"query failed: {exc}") from exc
        except TimeoutError as exc:
            raise e.PostgresTimeout(f"query did not finish within {timeout:.1f}s") from exc

    async def query_in(self, database: str, text: str, params: tuple[Any, ...] = (),
                       timeout: float = 10.0) -> list[tuple[Any, ...]]:
        """One statement in another database (a logical slot lives in one), on a connection of
        its own. The server gives up at ``timeout`` too: a statement left waiting there (a slot
        creation behind a long transaction) would pile up with each retry."""
        dsn = conf.conninfo(self.local_host, self.settings.listen_port, self.settings.authentication.superuser,
                            dbname=database, connect_timeout=3, options=f"-c statement_timeout={int(timeout * 1000)}")
        opened = bounded.Opened()

        async def work() -> list[tuple[Any, ...]]:
            async with opened.add(await psycopg.AsyncConnection.connect(dsn, autocommit=True)) as conn:
                cur = await conn.execute(text, params)
                return await cur.fetchall() if cur.description else []

        try:
            return await bounded.run(work, timeout + 1, opened.close)
        except psycopg.Error as exc:
            raise e.PostgresError(f"query in database {database} failed: {exc}") from exc
        except TimeoutError as exc:
            raise e.PostgresTimeout(f"query in database {database} did not finish within {timeout:.0f}s") from exc

    def superuser_dsn(self, host: str, port: int) -> str:
        """A superuser connection string for another member's Postgres."""
        return self._superuser_dsn(host, port)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        bounded.close_quietly(conn)

    async def disconnect(self) -> None:
        self._drop_connection()

    async def _controldata(self, field: str) -> str | None:
        """One field of pg_controldata's output (None: not shown)."""
        out = await self.runas.run([self._bin("pg_controldata"), "-D", str(self.data_dir)], timeout=10)
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(field + ":")), None)

    async def shutdown_checkpoint_lsn(self) -> int:
        """The stopped cluster's last checkpoint location, read from pg_control."""
        hi, _, lo = (await self._controldata("Latest checkpoint location") or "").partition("/")
        if not lo:
            raise e.PostgresError("pg_controldata shows no checkpoint location")
        return (int(hi, 16) << 32) + int(lo, 16)

    async def system_identifier(self) -> str | None:
        if self._sysid is None and not self.data_dir_empty():
            with contextlib.suppress(e.PostgresError):
                self._sysid = await self._controldata("Database system identifier")
        return self._sysid

    async def observe(self, previous: PgState, now: float, timeout: float = 5.0) -> PgState:
        """The local Postgres now; ``previous`` carries the times of last streaming and going down."""
        empty = self.data_dir_empty()
        base = PgState(data_dir_empty=empty, sysid=None if empty else await self.system_identifier(),
                       following=self.disk.following, primary_on_timeline=self.disk.primary_on_timeline,
                       handover_lsn=self.disk.handover_lsn, last_streaming_at=previous.last_streaming_at,
                       rewound_onto=self.rewound_onto, start_failed_at=self.start_failed_at)
        down = previous.down_since if previous.down_since is not None else now
        if empty or self.postmaster_pid() is None:
            return replace(base, down_since=down, hung_since=previous.hung_since)
        try:
            rows = await self.query(STATE_QUERY, timeout=timeout)
        except e.PostgresTimeout:
            # It lives but does not answer: hung (a storage stall, SIGSTOP), or overloaded.
            return replace(base, down_since=down, postmaster_alive=True, unresponsive=True,
                           hung_since=previous.hung_since if previous.hung_since is not None else now)
        except e.PostgresError:
            # Starting up, shutting down or in crash recovery: the postmaster lives but refuses us.
            return replace(base, down_since=down, postmaster_alive=True, hung_since=previous.hung_since)
        (in_rec, cur, received, replayed, tli, streaming, sysid, replication, replay_ts, sync_setting, pending,
         version, started, paused, reason, logical, wal_level, started_epoch, sessions, archiver, idle) = rows[0]
        newer = installed.restart_reason(version, await self.installed.get())
        pending = pending or bool(newer)
        self.facts = PgFacts(version, started, bool(paused), {**(reason or {}), **newer}, ArchiveState.from_row(archiver))
        if self.catalog is None:
            with contextlib.suppress(e.PostgresError):
                self.catalog = guc.catalog(await self.query(guc.CATALOG_QUERY, timeout=5))
        self._sysid = sysid
        self.replication = replication or []
        self.replayed_timestamp = replay_ts
        if not in_rec and self.disk.primary_on_timeline != tli:
            self.remember(primary_on_timeline=tli, following=None, handover_lsn=None)
        if in_rec and not previous.data_dir_empty:
            # A standby reports its timeline from the wal receiver while streaming and from the
            # last restartpoint otherwise, which can lag; timelines of one data directory only grow.
            tli = max(tli or 0, previous.timeline)
        return replace(
            base, sysid=sysid, running=True, postmaster_alive=True, in_recovery=in_rec, timeline=tli or 0,
            lsn=cur if not in_rec else max(received, replayed), replayed_lsn=replayed if in_rec else cur,
            streaming=streaming, last_streaming_at=now if streaming else previous.last_streaming_at,
            stalled_since=_stalled_since(previous, in_rec and not streaming, self.disk.following, now),
            # A standby that just connected has no write position yet: judge it by its record.
            replica_lsns={r["application_name"]: int(r["write_lsn"]) for r in self.replication
                          if r.get("state") == "streaming" and r.get("write_lsn") is not None},
            sync_setting=sync_setting or "", pending_restart=bool(pending), idle_physical_slots=frozenset(idle or ()),
            logical_slots={str(k): int(v) for k, v in (logical or {}).items()}, wal_level=wal_level or "",
            sync_confirmed=frozenset(r["application_name"] for r in self.replication
                                     if r.get("state") == "streaming" and r.get("sync_state") in ("sync", "quorum")),
            primary_on_timeline=self.disk.primary_on_timeline, following=self.disk.following,
            started_at=float(started_epoch) if started_epoch is not None else None, sessions=int(sessions))

    # -- configuration -------------------------------------------------------------------

    def write_config(self, parameters: dict[str, Any], hba: list[str] | None,
                     primary: tuple[str, int] | None, leader_name: str | None, use_slots: bool,
                     slot: str | None = None, restore: bool = True) -> None:
        """``slot``: stream through it instead of our own slot (``use_slots``); ``restore``: with restore_command."""
        ci = None
        if primary is not None:
            self._write_passfile()
            ci = conf.conninfo(primary[0], primary[1], self.settings.authentication.replication,
                               passfile=self.passfile, application_name=self.name)
        text = conf.render_postgresql_conf(self.settings, parameters, self.name, ci,
                                           slot or (conf.slot_name(self.name) if use_slots else None), restore)
        self.runas.write_file(self.data_dir / "postgresql.conf", text)
        self.runas.write_file(self.data_dir / "pg_hba.conf", conf.render_hba(hba))
        self.remember(following=leader_name)

    def _write_passfile(self) -> None:
        auth = self.settings.authentication
        entries = [auth.replication, auth.superuser] + ([auth.rewind] if auth.rewind else [])
        self.runas.write_file(self.passfile, conf.render_pgpass(entries), mode=0o600)

    def make_standby(self) -> None:
        self.runas.write_file(self.data_dir / "standby.signal", "")

    def make_primary(self) -> None:
        (self.data_dir / "standby.signal").unlink(missing_ok=True)

    # -- processes ---------------------------------------------------------------------

    async def start(self, timeout: float, missing_wal_is_final: bool = False) -> None:
        """Start the postmaster as our child and wait until it accepts connections (WalGone when
        ``missing_wal_is_final`` and it could only wait for WAL its upstream removed)."""
        if self.postmaster_pid() is not None:
            return
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        self.exited.clear()
        end = time.monotonic() + timeout  # for every attempt together: a leader holds its key meanwhile
        for attempt in range(20):
            path = Path(self.log_path)
            tail = startup.LogTail(path, startup.log_size(path))
            # pgBackRest's archive-push/-get (``core.archive``) find the data directory here.
            self._proc = await self.runas.spawn([self._bin("postgres"), "-D", str(self.data_dir)], self.log_path,
                                                {"PGBACKREST_PG1_PATH": str(self.data_dir)})
            asyncio.get_running_loop().create_task(self._watch_exit(self._proc))
            try:
                await startup.wait_ready(self._proc, self._superuser_dsn(), tail, max(0.5, end - time.monotonic()),
                                         missing_wal_is_final)
                return
            except e.WalGone:
                await self.stop("immediate")  # it would wait for that WAL forever
                raise
            except e.Unopenable:
                # Stopped, it counts as a start that failed: a leader gives its key up at once.
                await self.stop("immediate")
                self.start_failed_at = time.monotonic()
                raise
            except e.PostgresError:
                # A SIGKILLed postmaster's backends may hold shared memory for a moment longer.
                if attempt == 19 or self._proc.returncode is None or time.monotonic() >= end:
                    self.start_failed_at = time.monotonic() if self._proc.returncode is not None else None
                    raise
                await asyncio.sleep(0.1)

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if proc is self._proc:
            self.exited.set()

    async def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop in ``mode``. Past ``timeout`` a clean stop goes on as an immediate one; an
        immediate one not done within 5 s (a hung postmaster never acts on SIGQUIT) as a kill of
        the whole tree."""
        await self.disconnect()
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode])
        if await bounded.until(lambda: self.postmaster_pid() is None, timeout if mode != "immediate" else min(timeout, 5)):
            return
        if mode != "immediate":
            log.warning("postgres did not stop in %ss (%s): stopping immediately", timeout, mode)
            return await self.stop("immediate", timeout=10)
        log.warning("postgres did not stop in 5 s (immediate): killing it and its backends")
        if not await self.kill(0):
            raise e.PostgresError("postgres did not stop, even after SIGKILL")

    async def kill(self, grace: float, limit: float = 5.0) -> bool:
        """KillPostgres: SIGQUIT, and SIGKILL to the tree after ``grace`` s. True once every process is gone;
        False when some live ``limit`` s later (blocked in the kernel: SIGKILL pending, no more writes)."""
        await self.disconnect()
        pid, tree = self.postmaster_pid(), []
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGQUIT)
            await bounded.until(lambda: self.postmaster_pid() is None, grace)
            tree = processes.kill_tree(pid) if self.postmaster_pid() is not None else []
        return await bounded.until(lambda: self.postmaster_pid() is None and not any(map(processes.alive, tree)), limit)

    async def promote(self, old_timeline: int, limit: float = 60) -> int | None:
        """Promote; where ``old_timeline`` ended (None: the history file could not be read)."""
        await promotion.promote(self.query, limit)
        try:
            return await promotion.switch_point(self.query, old_timeline)
        except e.PostgresError:
            return None

    async def checkpoint(self, timeout: float = 600) -> None:
        """CHECKPOINT on a connection of its own, so the HA loop's queries never queue behind it;
        given up (the server cancels it too) after ``timeout`` seconds."""
        await self.query_in("postgres", "CHECKPOINT", timeout=timeout)

    # -- data directory ------------------------------------------------------------------

    async def initdb(self, options: list[str]) -> None:
        self.runas.make_private_dir(self.data_dir)
        su = self.settings.authentication.superuser
        pwfile = self.data_dir.with_name(self.data_dir.name + ".pwfile")
        self.runas.write_file(pwfile, (su.password or "") + "\n")
        argv = [self._bin("initdb"), "-D", str(self.data_dir), "-U", su.username, "--auth-local=peer",
                "--auth-host=scram-sha-256", *options]
        if su.password:
            argv.append(f"--pwfile={pwfile}")
        try:
            await self.runas.run(argv, timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        self._sysid = None

    async def create_roles(self) -> None:
        await roles.ensure(self._superuser_dsn(), self.settings.authentication)

    async def basebackup(self, host: str, port: int) -> None:
        """Clone the leader into an empty data directory."""
        self.wipe()
        self.runas.make_private_dir(self.data_dir)
        rep = self.settings.authentication.replication
        self._write_passfile()
        env = {"PGPASSFILE": self.passfile}
        await self.runas.run([self._bin("pg_basebackup"), "-D", str(self.data_dir), "-h", host, "-p", str(port),
                              "-U", rep.username, "-X", "stream", "--no-password", *self.settings.basebackup],
                             env=env, timeout=3600)
        self.forget_origin()

    def forget_origin(self) -> None:
        """A new data directory was made: nothing we remembered of the old one holds."""
        self._sysid = None
        self.remember(primary_on_timeline=None, following=None, handover_lsn=None)

    async def rewind(self, host: str, port: int, leader_timeline: int) -> bool:
        """Rewind the (stopped) data directory onto the leader's timeline.

        Returns False when the leader's control file does not show its new timeline yet (it has
        not finished the checkpoint after its promotion): pg_rewind would wrongly find nothing
        to do, so the caller retries later.
        """
        creds = self.settings.authentication.rewind or self.settings.authentication.superuser
        self._write_passfile()
        source = conf.conninfo(host, port, creds, dbname="postgres", passfile=self.passfile, connect_timeout=5)
        out = await self.runas.run(conf.rewind_argv(self._bin("pg_rewind"), str(self.data_dir), source), timeout=3600)  # synced: a crash right after leaves no torn directory
        if "same timeline" in out and leader_timeline > (self.disk.primary_on_timeline or 0):
            return False
        log.info("pg_rewind: %s", out.strip().splitlines()[-1])
        if "no rewind required" in out and (fork := walcut.diverged_at(out)):  # judged by its replay point only
            size = int(await self._controldata("Bytes per WAL segment") or 16 << 20)
            if cut := walcut.cut(self.data_dir / "pg_wal", fork[1], fork[0], size):
                log.warning("no rewind required by our replay point: pg_wal cut at the fork %X/%X, so that no WAL "
                            "received past it is replayed (%s)", fork[0] >> 32, fork[0] & 0xFFFFFFFF, ", ".join(cut))
        self.remember(primary_on_timeline=None, handover_lsn=None)
        self.rewound_onto = leader_timeline
        return True

    def wipe(self) -> None:
        self.runas.remove_tree(self.data_dir)
        self._sysid = None


def _stalled_since(previous: PgState, stalled: bool, following: str | None, now: float) -> float | None:
    """Since when a standby has not streamed from the member it follows (None: it streams, or
    is no standby); pointing it at another member starts the count again."""
    if not stalled:
        return None
    if previous.stalled_since is None or previous.following != following:
        return now
    return previous.stalled_since
