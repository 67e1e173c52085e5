"""Continuous WAL archiving: the parameters the ``archive`` section sets on every member, and the
archiver's health as ``pg_stat_archiver`` and the archive status directory show it (pure).

``archive_mode`` is ``on``, not ``always``: pgBackRest refuses ``always`` (``check``: "archive_mode
=always not supported"), and with ``on`` only the primary pushes, so a rewound or re-cloned old
primary never pushes WAL of an abandoned timeline. On promotion Postgres itself archives the old
timeline's last segment as ``.partial`` and the new timeline's history file; the segments before
it that the old primary never pushed are found here (``stranded``, ``missing``) and pushed by the
new primary (``agent.archive``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgha.core.settings import ClusterSettings


@dataclass(frozen=True)
class ArchiveState:
    """The archiver as the last look saw it (times: epoch seconds, None: never)."""

    mode: str = "off"  # archive_mode as Postgres runs with it
    archived: int = 0  # segments archived since the statistics were reset
    failed: int = 0  # failed attempts since then
    last_archived_wal: str = ""
    last_archived_at: float | None = None
    last_failed_wal: str = ""
    last_failed_at: float | None = None
    backlog: int = 0  # segments waiting (``.ready`` in archive_status)
    oldest_waiting_at: float | None = None  # when the oldest of them was completed

    @classmethod
    def from_row(cls, raw: Mapping[str, Any] | None) -> ArchiveState | None:
        if not raw:
            return None

        def at(key: str) -> float | None:
            v = raw.get(key)
            return float(v) if v is not None else None

        return cls(mode=str(raw.get("mode") or "off"), archived=int(raw.get("archived") or 0),
                   failed=int(raw.get("failed") or 0), last_archived_wal=str(raw.get("last_archived_wal") or ""),
                   last_archived_at=at("last_archived"), last_failed_wal=str(raw.get("last_failed_wal") or ""),
                   last_failed_at=at("last_failed"), backlog=int(raw.get("ready") or 0),
                   oldest_waiting_at=at("oldest_ready"))

    def waiting_for(self, now: float) -> float:
        """Seconds the oldest waiting segment has waited (0: nothing waits)."""
        return max(0.0, now - self.oldest_waiting_at) if self.backlog and self.oldest_waiting_at else 0.0

    @property
    def failing(self) -> bool:
        """The last attempt failed (no success since)."""
        return self.last_failed_at is not None and (self.last_archived_at is None
                                                    or self.last_failed_at > self.last_archived_at)


def parameters(config: ClusterSettings) -> dict[str, Any]:
    """The Postgres parameters the ``archive`` section sets (none without one)."""
    a = config.archive
    if a is None:
        return {}
    out: dict[str, Any] = {"archive_mode": "on", "archive_command": command(config, "archive-push %p")}
    restore = command(config, 'archive-get %f "%p"', restore=True)
    if restore:
        out["restore_command"] = restore
    return out


def command(config: ClusterSettings, action: str, restore: bool = False) -> str:
    """``archive.command`` / ``archive.restore_command`` as given, else pgBackRest's."""
    a = config.archive
    if a is None:
        return ""
    given = a.restore_command if restore else a.command
    if given:
        return given
    return pgbackrest(a.pgbackrest_stanza, a.pgbackrest_config, action) if a.pgbackrest_stanza else ""


def pgbackrest(stanza: str, config_path: str, action: str) -> str:
    """pgBackRest's command line for ``action`` (``archive-push %p``...), as Postgres runs it."""
    cfg = f" --config={shlex.quote(config_path)}" if config_path else ""
    return f"pgbackrest{cfg} --stanza={shlex.quote(stanza)} {action}"


def problem(state: ArchiveState | None, primary: bool, now: float, max_delay: float) -> str | None:
    """Why ``/archive`` answers 503 (None: 200). Only a primary archives (``archive_mode = on``):
    a replica's archiving is the primary's job. An idle primary with nothing waiting is healthy
    however old its last success: what pages is WAL waiting longer than ``max_delay``."""
    if state is None:
        return "postgres is not running"
    if state.mode == "off":
        return "archiving is off (archive_mode = off)"
    if not primary and state.mode != "always":
        return None
    waited = state.waiting_for(now)
    if waited > max_delay:
        failing = f", last attempt failed on {state.last_failed_wal}" if state.failing else ""
        return (f"{state.backlog} WAL segment(s) wait to be archived, the oldest for {waited:.0f} s "
                f"(archive.max_delay {max_delay:.0f} s){failing}")
    return None


def flag(state: ArchiveState | None, primary: bool, now: float, max_delay: float) -> str:
    """What ``pgha list`` shows in its Archive column: stable while the problem lasts, so the
    member record is not rewritten each loop ("" while healthy or off)."""
    if state is None or state.mode == "off" or problem(state, primary, now, max_delay) is None:
        return ""
    return f"failing ({state.last_failed_wal})" if state.failing else "behind"


def body(state: ArchiveState | None, now: float) -> dict[str, Any]:
    """The ``archive`` object of the status body (a pgha key: Patroni has none)."""
    if state is None:
        return {}
    age = now - state.last_archived_at if state.last_archived_at is not None else None
    return {"mode": state.mode, "archived_count": state.archived, "failed_count": state.failed,
            "last_archived_wal": state.last_archived_wal, "last_archived_age": age,
            "last_failed_wal": state.last_failed_wal, "failing": state.failing, "backlog": state.backlog,
            "backlog_age": state.waiting_for(now)}



_SEGMENT = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}$")


def stranded(done: list[str], timeline: int) -> list[str]:
    """Of the segments marked archived (``.done``) in a new primary's archive status, those of
    earlier timelines: streamed from the old primary, which may have died before pushing them
    (with ``archive_mode = on`` a standby marks what it receives as done, never pushes it)."""
    out = []
    for name in done:
        m = _SEGMENT.match(name)
        if m and int(m.group(1), 16) < timeline:
            out.append(name)
    return sorted(out)


def archive_id(listing: list[str]) -> str | None:
    """The newest archive id (``15-1``, ``15-2`` after a stanza-upgrade) in a stanza's archive."""
    ids = [n.strip() for n in listing if re.fullmatch(r"\d+-\d+", n.strip())]
    return max(ids, key=lambda n: int(n.split("-")[1]), default=None)


def missing(candidates: list[str], in_repository: list[str]) -> list[str]:
    """Candidates the repository does not hold (its names carry a checksum and an extension)."""
    held = {n.strip().rsplit("/", 1)[-1][:24] for n in in_repository}
    return [c for c in candidates if c not in held]
