"""The Postgres binary installed in ``bin_dir``, against the one running: after a package update
the running server is older than ``postgres --version`` says, and needs a restart to use it.

``postgres --version`` runs only when the binary's file changes (its inode, size or mtime), not
on every loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, str] | None:
    """``postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)`` -> (150010, "15.10")."""
    m = _VERSION.search(text)
    if m is None:
        return None
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return major * 10000 + minor, f"{major}.{minor}"


def running_text(num: int) -> str:
    """``server_version_num`` 150008 -> "15.8"."""
    return f"{num // 10000}.{num % 10000}"


class InstalledVersion:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._stamp: tuple[int, int, int] | None = None
        self._version: tuple[int, str] | None = None

    async def get(self) -> tuple[int, str] | None:
        try:
            st = os.stat(self.binary)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._stamp, self._version = stamp, await _ask(self.binary)
        return self._version


async def _ask(binary: Path) -> tuple[int, str] | None:
    proc = await asyncio.create_subprocess_exec(str(binary), "--version", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 5.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return None
    return parse_version(out.decode(errors="replace"))


def restart_reason(running: int | None, installed: tuple[int, str] | None) -> dict[str, Any]:
    """Patroni's pending-restart shape for a binary newer than the running server ({} if none)."""
    if not running or installed is None or installed[0] <= running:
        return {}
    return {"server_version": {"old_value": running_text(running), "new_value": installed[1]}}
