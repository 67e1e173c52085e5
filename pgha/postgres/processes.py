"""The postmaster's process tree, read from /proc: what a hung Postgres leaves to kill.

A signal to the postmaster's process group does not reach its backends: each one calls setsid()
when the postmaster forks it, and leads a session of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def zombie(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] == "Z"


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                out.append(int(entry.name))
    return out


def kill_tree(postmaster: int) -> list[int]:
    """SIGKILL the postmaster and every process it started; returns their pids. The postmaster
    is stopped first, so that it forks nothing between the listing and the kill, and its
    children are listed before it dies (they then belong to init and cannot be told apart)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(postmaster, signal.SIGSTOP)
    tree = children(postmaster)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(postmaster, signal.SIGKILL)
    return [postmaster, *tree]


def running_postmaster(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid`` if that process is alive (a zombie is not)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        return None if zombie(pid) else pid
    except (OSError, ValueError):
        return None


async def kill(data_dir: Path, grace: float, limit: float = 5.0) -> bool:
    """SIGQUIT to the postmaster of ``data_dir``, and after ``grace`` s SIGKILL to its whole tree.
    True once every process is gone; False when some still live ``limit`` s later (blocked in
    the kernel: their SIGKILL stays pending, they never take another write)."""
    pid = running_postmaster(data_dir)
    if pid is None:
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGQUIT)
    end = time.monotonic() + grace
    while running_postmaster(data_dir) is not None and time.monotonic() < end:
        await asyncio.sleep(0.05)
    tree = kill_tree(pid) if running_postmaster(data_dir) is not None else []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if running_postmaster(data_dir) is None and not any(alive(p) for p in tree):
            return True
        await asyncio.sleep(0.05)
    return False
