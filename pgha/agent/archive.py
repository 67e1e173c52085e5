"""The WAL archive's upkeep on the primary (``core.archive``): pgBackRest's stanza, created by each
new primary so that archiving needs no operator step, and the segments a dead old primary never
pushed, handed to the new primary's archiver."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from pgha import errors as e
from pgha.config.model import LocalConfig
from pgha.core import archive, backup
from pgha.core.settings import ClusterSettings
from pgha.log import Repeats
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")
STANZA_RETRY = 30.0


def socket_dir(config: ClusterSettings) -> str:
    return str(config.postgresql.parameters.get("unix_socket_directories", "/tmp")).split(",")[0].strip()


class ArchiveKeeper:
    def __init__(self, local: LocalConfig, postgres: PostgresController, errors: Repeats) -> None:
        self.local, self.postgres, self.runas, self._errors = local, postgres, postgres.runas, errors
        self._stanza, self._stanza_tried = "", -STANZA_RETRY  # the stanza this primary created
        self._swept = 0  # the timeline whose stranded segments were handed to the archiver

    async def primary_turn(self, config: ClusterSettings, timeline: int) -> None:
        await self.ensure_stanza(config)
        if self._stanza and timeline > 1 and timeline != self._swept:
            await self.push_stranded(config, timeline)

    async def ensure_stanza(self, config: ClusterSettings) -> None:
        """Create the stanza (idempotent); retried every ``STANZA_RETRY`` seconds until it works."""
        a, p = config.archive, self.local.postgresql
        if a is None or not a.pgbackrest_stanza or self._stanza == a.pgbackrest_stanza:
            return
        if time.monotonic() - self._stanza_tried < STANZA_RETRY:
            return
        self._stanza_tried = time.monotonic()
        cmd = backup.argv(backup.Backup(member=self.local.name, standby=False), a.pgbackrest_stanza,
                          a.pgbackrest_config, p.data_dir, p.listen_port, socket_dir(config),
                          p.authentication.superuser.username, p.host)
        try:
            await self.runas.run([*cmd, "--log-level-console=warn", "stanza-create"], timeout=300)
        except (e.PostgresError, OSError, TimeoutError) as exc:
            self._errors.error(f"pgbackrest stanza-create {a.pgbackrest_stanza} failed, archiving cannot work: {exc}")
            return
        self._stanza = a.pgbackrest_stanza
        log.info("pgbackrest stanza %s ready: WAL archiving can push", self._stanza)

    async def push_stranded(self, config: ClusterSettings, timeline: int) -> None:
        """Earlier timelines' segments this node streamed but the repository lacks (their primary
        died before pushing them) are marked ``.ready`` again, so that Postgres's archiver pushes
        them: without them a restore stops at the gap. Only missing ones: a streamed copy of a
        segment already pushed need not match it byte for byte, and pgBackRest refuses a
        different checksum."""
        status = Path(self.local.postgresql.data_dir) / "pg_wal" / "archive_status"
        done = [p.name[:-5] for p in status.glob("*.done")]
        candidates = [n for n in archive.stranded(done, timeline) if (status.parent / n).exists()]
        if not candidates:
            self._swept = timeline
            return
        try:
            held = await self._listing(config, candidates)
        except (e.PghaError, OSError, TimeoutError) as exc:
            self._errors.error(f"could not list the archive for timeline {timeline - 1}'s last segments: {exc}")
            return
        moved = []
        for name in archive.missing(candidates, held):
            try:
                (status / f"{name}.done").rename(status / f"{name}.ready")
                moved.append(name)
            except FileNotFoundError:  # removed by a checkpoint meanwhile: nothing left to push
                continue
        if moved:
            log.warning("pushing %d segment(s) of earlier timelines the old primary never archived: %s",
                        len(moved), ", ".join(moved))
            # The archiver looks for new .ready files only when woken (else once a minute): a
            # reload wakes it and changes nothing else.
            with contextlib.suppress(e.PghaError, OSError):
                await self.postgres.query("SELECT pg_reload_conf()")
        self._swept = timeline

    async def _listing(self, config: ClusterSettings, candidates: list[str]) -> list[str]:
        a = config.archive
        assert a is not None
        base = ["pgbackrest", *([f"--config={a.pgbackrest_config}"] if a.pgbackrest_config else []),
                f"--stanza={a.pgbackrest_stanza}", "--log-level-console=warn", "repo-ls"]
        root = f"archive/{a.pgbackrest_stanza}"
        ident = archive.archive_id((await self.runas.run([*base, root], timeout=60)).splitlines())
        if ident is None:
            return []
        held: list[str] = []
        for prefix in sorted({c[:16] for c in candidates}):
            held += (await self.runas.run([*base, f"{root}/{ident}/{prefix}"], timeout=60)).splitlines()
        return held
