"""Waiting for a postmaster to open: until it accepts connections, exits, or its log shows the
one failure no waiting cures. A standby whose upstream already removed WAL it must replay
before it is consistent (a rewind that ran while the new primary recycled the segments it
needed, or a replica down longer than the primary keeps WAL) refuses connections forever."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import psycopg

from pgha import errors as e

_GONE = re.compile(r"requested WAL segment (\S+) has already been removed")
GRACE = 5.0  # the error must outlast a few of the standby's retries (wal_retrieve_retry_interval)
# Refusals of a running postmaster that waiting does not cure: its disk is full, and every
# backend dies writing its relation cache file. Only these: any other refusal may be a recovery
# still running, and a leader holds its key for primary_start_timeout while one runs.
_UNOPENABLE = re.compile(r"could not write init file|No space left on device")


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class LogTail:
    """What the server appends to its log (stderr) from ``offset`` on, read piece by piece."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path, self.offset = path, offset

    def read(self) -> str:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return ""
        # Read whole lines only: a message cut in two would escape the pattern.
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode(errors="replace")


def wal_gone(text: str) -> str | None:
    """The WAL segment the upstream reported removed, if the log says so."""
    found = _GONE.search(text)
    return found.group(1) if found else None


async def wait_ready(proc: asyncio.subprocess.Process, dsn: str, tail: LogTail, timeout: float,
                     missing_wal_is_final: bool) -> None:
    """Until ``proc`` accepts connections; PostgresError if it exits or ``timeout`` passes,
    WalGone if ``missing_wal_is_final``, its log said that WAL it must replay was removed
    upstream, and it still does not open ``GRACE`` seconds later (removed WAL does not return)."""
    end = time.monotonic() + timeout
    gone: tuple[str, float] | None = None
    refused_since: float | None = None
    read_at = 0.0
    while time.monotonic() < end:
        if proc.returncode is not None:
            raise e.PostgresError(f"postgres exited with {proc.returncode} while starting; see {tail.path}")
        refusal = await _refusal(proc, dsn)
        if refusal is None:
            return
        now = time.monotonic()
        if _UNOPENABLE.search(refusal):
            refused_since = now if refused_since is None else refused_since
            if now - refused_since >= GRACE:
                raise e.Unopenable(f"postgres runs but refuses every connection ({refusal.strip()}); see {tail.path}")
        else:
            refused_since = None
        if missing_wal_is_final and now - read_at >= 1.0:
            read_at = now
            segment = wal_gone(tail.read())
            if segment is not None and gone is None:
                gone = (segment, now)
            if gone is not None and now - gone[1] >= GRACE:
                raise e.WalGone(f"its upstream already removed WAL segment {gone[0]}, which this standby must "
                                f"replay before it can open; it needs a new copy of the data directory")
        await asyncio.sleep(0.05)
    raise e.PostgresError(f"postgres did not accept connections within {timeout:.0f}s; see {tail.path}")


async def _refusal(proc: asyncio.subprocess.Process, dsn: str) -> str | None:
    """Why a connection failed (None: it succeeded); given up as soon as the postmaster exits,
    because whoever holds its port then (the reason it exited) may hold our attempt until
    connect_timeout."""
    attempt = asyncio.ensure_future(psycopg.AsyncConnection.connect(dsn, autocommit=True))
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait((attempt, exited), return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        if not attempt.done():
            attempt.cancel()
    try:
        conn = await attempt
    except asyncio.CancelledError:
        return "the postmaster exited"
    except psycopg.OperationalError as exc:
        return str(exc)
    await conn.close()
    return None
