"""Base backups beside the HA loop (``core.backup``): the member named in the ``backup`` key runs
pgBackRest and writes the outcome back; the leader starts scheduled backups and fails a backup
whose member left or went silent, and keeps the archive (``agent.archive``). Kicked after each HA
loop; a backup never delays the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from pgha import errors as e
from pgha.agent.archive import ArchiveKeeper, socket_dir
from pgha.config.model import LocalConfig
from pgha.core import backup
from pgha.core.cluster import ClusterView
from pgha.core.events import Event, Phase
from pgha.core.requests import Refusal, backup_member, check_backup
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import PgState
from pgha.dcs.store import ClusterStore
from pgha.log import Repeats
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")
IDLE = 10.0  # seconds between two looks when no HA loop kicks us


class BackupRunner:
    def __init__(self, local: LocalConfig, store: ClusterStore, postgres: PostgresController) -> None:
        self.local, self.store, self.runas = local, store, postgres.runas
        self._kicked = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._errors = Repeats(log)
        self.archive = ArchiveKeeper(local, postgres, self._errors)

    def kick(self) -> None:
        self._kicked.set()

    async def run(self, view: Callable[[], ClusterView], config: Callable[[], ClusterSettings],
                  leading: Callable[[], bool], pg: Callable[[], PgState]) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kicked.wait(), IDLE)
            self._kicked.clear()
            try:
                await self._turn(view(), config(), leading(), pg)
                self._errors.clear()
            except e.DcsError as exc:
                self._errors.error(f"backup coordination: {exc}")

    async def _turn(self, view: ClusterView, config: ClusterSettings, leading: bool, pg: Callable[[], PgState]) -> None:
        b, now, deadline = view.backup, time.time(), config.retry_timeout
        if leading:
            state = pg()
            if not state.in_recovery and state.timeline:
                await self.archive.primary_turn(config, state.timeline)
        step = backup.next_step(view, self.local.name, self._running is not None, leading, now,
                                config.backup.timeout, config.backup.schedule)
        if step.kind == "start" and b is not None:
            started = replace(b, state=backup.RUNNING, started=now)
            if await self.store.write_backup(started, deadline):
                # the next write compares against the revision this one made: read it back
                self._running = asyncio.get_running_loop().create_task(self._take(started, config, pg))
        elif step.kind == "interrupted" and b is not None:
            log.warning("backup %s was interrupted (the agent restarted during it)", b.type)
            await self.store.write_backup(backup.finished(b, False, now, reason=step.reason), deadline)
        elif step.kind == "fail" and b is not None:
            log.warning("backup on %s marked failed: %s", b.member, step.reason)
            await self.store.write_backup(backup.finished(b, False, now, reason=step.reason), deadline)
        elif step.kind == "schedule":
            await self._schedule(view, config, step.fired, now)

    async def _schedule(self, view: ClusterView, config: ClusterSettings, fired: float, now: float) -> None:
        s = config.backup
        refusal = check_backup(view, config, s.type)
        member = backup_member(view, s.source) if refusal is None else refusal
        if isinstance(member, Refusal):
            self._errors.error(f"scheduled backup not started: {member.reason}")
            return
        record = backup.request(view, member, s.type, "schedule", self.primary(), now, fired)
        if await self.store.write_backup(record, config.retry_timeout):
            log.info("scheduled %s backup: asked %s", s.type, member)

    def primary(self) -> tuple[str, int, str]:
        pg = self.local.postgresql
        return pg.host, pg.port, pg.data_dir

    async def _take(self, b: backup.Backup, config: ClusterSettings, pg: Callable[[], PgState]) -> None:
        """Run pgBackRest (stanza-create is idempotent: a first backup needs no operator step),
        then record the outcome and a timeline event."""
        try:
            await self._backup(b, config, pg)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is still an outcome to record
            log.error("backup %s failed unexpectedly: %s", b.type, exc, exc_info=True)
        finally:
            self._running = None

    async def _backup(self, b: backup.Backup, config: ClusterSettings, pg: Callable[[], PgState]) -> None:
        a, p = config.archive, self.local.postgresql
        stanza, conf = (a.pgbackrest_stanza, a.pgbackrest_config) if a is not None else ("", "")
        cmd = backup.argv(b, stanza, conf, p.data_dir, p.listen_port, socket_dir(config), p.authentication.superuser.username,
                          p.host)
        log.info("starting %s backup%s", b.type, " from this standby" if b.standby else " on the primary")
        t0, ok, out = time.time(), True, ""
        try:
            await self.runas.run([*cmd, "stanza-create"], timeout=600)
            standby = ["--backup-standby"] if b.standby else []
            out = await self.runas.run([*cmd, *standby, "--log-level-console=info", f"--type={b.type}", "backup"],
                                       timeout=config.backup.timeout)
        except (e.PostgresError, OSError, TimeoutError) as exc:
            ok, out = False, str(exc)
        label = backup.label(out) if ok else ""
        reason = "" if ok else out.strip().splitlines()[-1][:500] if out.strip() else "pgbackrest failed"
        done = backup.finished(b, ok, time.time(), label, reason)
        view = await self.store.load(config.retry_timeout)
        current = view.backup
        if current is None or current.member != b.member or current.started != b.started:
            log.warning("backup %s finished but the backup key changed meanwhile: outcome not recorded", label)
            return
        state = pg()
        detail = {"label": label, "type": b.type, "standby": b.standby, "requested_by": b.requested_by,
                  **({"reason": reason} if reason else {})}
        event = Event("backup", self.local.name, view.leader or "", state.timeline, state.lsn,
                      done.progress(), (Phase("backup", t0, time.time() - t0),), detail)
        # The event goes first: whoever sees the key say "done" (pgha backup waits for it) finds it in the history.
        await self.store.append_event(event, config.retry_timeout)
        await self.store.write_backup(replace(done, revision=current.revision), config.retry_timeout)
        (log.info if ok else log.error)("%s", done.progress())
