"""Cut a stopped standby's WAL at the point where the leader's timeline forked from it.

pg_rewind judges a standby by its minimum recovery point and last checkpoint, not by the WAL it
received: a standby that received the old primary's WAL past the fork, but had not replayed it
(or not flushed what it replayed), gets "no rewind required" and keeps that WAL in pg_wal. At
its next start it replays it before it asks the new primary for more: rows the new primary never
had appear on a replica, and streaming then stops at the first record that does not link
(``incorrect prev-link``). Postgres reads the old timeline's segment files for positions past the
fork as long as the new timeline's are not there yet, so only removing them helps.

The cut makes the directory what a standby that never received the diverged WAL has: the fork's
segment ends at the fork (the rest zeroed, which recovery reads as the end of WAL), later segments
of the old timelines are gone. Everything kept is WAL both timelines share; whatever the standby
needs from the fork on it streams from the new primary, which serves its own copy of the fork's
segment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_DIVERGED = re.compile(r"servers diverged at WAL location ([0-9A-F]+)/([0-9A-F]+) on timeline (\d+)")
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$")


def diverged_at(rewind_output: str) -> tuple[int, int] | None:
    """(fork lsn, last common timeline) from pg_rewind's output; None when it named no fork (the
    same timeline, or an error)."""
    m = _DIVERGED.search(rewind_output)
    if m is None:
        return None
    return (int(m.group(1), 16) << 32) + int(m.group(2), 16), int(m.group(3))


def cut(wal_dir: Path, timeline: int, lsn: int, segment_size: int) -> list[str]:
    """Remove from ``wal_dir`` the WAL past ``lsn`` on ``timeline`` and its ancestors; returns the
    names of the files zeroed or removed. Newer timelines' files (the new primary's, streamed
    earlier) are left alone."""
    per_id = 0x1_0000_0000 // segment_size
    fork_seg, offset = divmod(lsn, segment_size)
    changed = []
    for path in sorted(wal_dir.iterdir()):
        m = _SEGMENT.match(path.name)
        if m is None or int(m.group(1), 16) > timeline:
            continue
        seg = int(m.group(2), 16) * per_id + int(m.group(3), 16)
        if seg > fork_seg:
            path.unlink()
            for status in ("ready", "done"):
                (wal_dir / "archive_status" / f"{path.name}.{status}").unlink(missing_ok=True)
            changed.append(path.name)
        elif seg == fork_seg and int(m.group(1), 16) == timeline and path.stat().st_size > offset:
            _zero_from(path, offset)
            changed.append(path.name)
    if changed:
        fd = os.open(wal_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return changed


def _zero_from(path: Path, offset: int) -> None:
    """Zero the file from ``offset`` to its end, in place (owner and size unchanged), durably."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(offset)
        left = size - offset
        while left > 0:
            n = f.write(bytes(min(left, 1 << 20)))
            left -= n
        f.flush()
        os.fsync(f.fileno())
