"""Why a standby does not stream, in Postgres's own words: the last failed connection of its WAL
receiver, read from the end of the Postgres log (a wrong replication password, a missing
pg_hba.conf entry, an unreachable upstream). Shown by ``pgha list`` and ``/patroni``."""

from __future__ import annotations

import re
from pathlib import Path

TAIL = 16384  # bytes of the log read: the receiver retries every wal_retrieve_retry_interval (5 s)
_FAILED = re.compile(r"(?:FATAL|ERROR):\s+could not connect to the primary server: (?:.*? failed: )?(.*)$")
_SERVER_SAID = re.compile(r"(?:FATAL|ERROR):\s+(.*)$")


def reason(line: str) -> str | None:
    """The reason in one log line of a failed connection, or None for any other line."""
    m = _FAILED.search(line)
    if m is None:
        return None
    text = m.group(1).strip()
    said = _SERVER_SAID.search(text)  # the upstream's own FATAL, e.g. password authentication failed
    return (said.group(1) if said else text).strip() or "connection failed"


def last_error(log_path: str) -> str:
    """The newest reason in the log's tail ("" when none)."""
    try:
        with Path(log_path).open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - TAIL))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((r for r in map(reason, reversed(lines)) if r), "")
