"""The postmaster's process tree, read from /proc: what a hung Postgres, or the fence, must kill.

A signal to the postmaster's process group does not reach its backends: each one calls setsid()
when the postmaster forks it, and leads a session of its own. Killing the postmaster alone is not
enough either: a backend in the middle of a statement finishes it, commits and acknowledges it
(measured: an INSERT acknowledged 3.4 s after its postmaster was SIGKILLed); only a wait on its
latch notices the postmaster's death. Standard library only: the fence imports this module and
must start in milliseconds."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """The process exists and is no zombie (a killed one not yet reaped is gone for us)."""
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
        return pid if alive(pid) else None
    except (OSError, ValueError):
        return None
