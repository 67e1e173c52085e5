"""Point-in-time recovery from the pgBackRest repository (``pgha restore``), pure parts: the
restore command line for a target, and what a finished recovery followed, read from the history
file of the timeline it opened."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


@dataclass(frozen=True)
class Target:
    """Where recovery stops: a time (ISO 8601 with a zone), an LSN, or the archive's end."""

    time: str = ""
    lsn: str = ""

    @classmethod
    def parse(cls, time: str | None, lsn: str | None, names: tuple[str, str] = ("--to", "--lsn")) -> Target:
        """``names``: what the caller calls the two (options, or config keys) in its errors."""
        if time and lsn:
            raise ValueError(f"give {names[0]} or {names[1]}, not both")
        if lsn and not _LSN.match(lsn):
            raise ValueError(f"{names[1]} {lsn!r} is not a WAL position like 0/5000060")
        if time:
            try:
                at = datetime.fromisoformat(time)
            except ValueError:
                raise ValueError(f"{names[0]} {time!r} is not an ISO 8601 time, e.g. 2026-12-05T19:10:58+00:00") from None
            if at.tzinfo is None:
                raise ValueError(f"{names[0]} {time!r} needs a time zone (e.g. +00:00): recovery compares commit times")
            return cls(time=at.isoformat(sep=" "))
        return cls(lsn=lsn or "")

    def options(self) -> list[str]:
        """pgBackRest's restore options: stop just after the target, then promote."""
        if self.time:
            return ["--type=time", f"--target={self.time}", "--target-action=promote"]
        if self.lsn:
            return ["--type=lsn", f"--target={self.lsn}", "--target-action=promote"]
        return ["--type=default"]

    def recovery(self) -> dict[str, str]:
        """The same target as Postgres recovery parameters (the caller promotes at the end)."""
        if self.time:
            return {"recovery_target_time": self.time}
        return {"recovery_target_lsn": self.lsn} if self.lsn else {}

    def describe(self) -> str:
        return self.time or self.lsn or "the end of the archive"


def restore_argv(stanza: str, config_path: str, data_dir: str, target: Target, backup_set: str = "") -> list[str]:
    """The restore into ``data_dir``, with archiving off in the copy: a restored cluster must
    never push its WAL into the cluster's repository."""
    return ["pgbackrest", *([f"--config={config_path}"] if config_path else []), f"--stanza={stanza}",
            f"--pg1-path={data_dir}", *target.options(), *([f"--set={backup_set}"] if backup_set else []),
            "--archive-mode=off", "--log-level-console=warn", "restore"]


@dataclass(frozen=True)
class Followed:
    """A recovery's path: the timeline it replayed last and where it left it (an LSN text)."""

    timeline: int
    ended_at: str
    opened: int  # the timeline the restored copy opened on promotion


def followed(history_files: dict[str, str]) -> Followed | None:
    """From the pg_wal history files (name -> text): the newest one's last line."""
    newest = max((n for n in history_files if re.fullmatch(r"[0-9A-F]{8}\.history", n)), default=None)
    if newest is None:
        return None
    rows = [line.split() for line in history_files[newest].splitlines() if line.strip() and not line.startswith("#")]
    if not rows or any(len(r) < 2 for r in rows):
        return None
    # The last line names the recovery's target timeline and where recovery ended; a target
    # reached early on that timeline's history lies on the first ancestor it ends before.
    end = _lsn(rows[-1][1])
    tli = next((int(r[0]) for r in rows[:-1] if end <= _lsn(r[1])), int(rows[-1][0]))
    return Followed(tli, rows[-1][1], int(newest[:8], 16))


def _lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)
