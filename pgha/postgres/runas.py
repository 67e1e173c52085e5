"""Run Postgres binaries as the Postgres OS user.

Postgres refuses to run as root; when the agent itself is root, every Postgres command and file
it creates is handed to ``os_user``.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgha import errors as e


@dataclass(frozen=True)
class RunAs:
    user: str

    @property
    def active(self) -> bool:
        return os.geteuid() == 0

    def _ids(self) -> tuple[int, int]:
        try:
            pw = pwd.getpwnam(self.user)
        except KeyError as exc:
            raise e.PostgresError(f"OS user {self.user!r} does not exist (postgresql.os_user)") from exc
        return pw.pw_uid, pw.pw_gid

    def chown(self, path: str | Path) -> None:
        if self.active:
            uid, gid = self._ids()
            os.chown(path, uid, gid)

    def make_private_dir(self, path: str | Path) -> None:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(0o700)
        self.chown(p)

    def write_file(self, path: str | Path, text: str | bytes, mode: int = 0o600, durable: bool = False) -> None:
        """``replace_file``, the new file owned by ``user``."""
        replace_file(path, text, mode, self._ids() if self.active else None, durable)

    def open_log(self, path: str | Path) -> int:
        """A log file for appending, readable by its owner only (statements may name roles)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        return fd

    def remove_tree(self, path: str | Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def _kwargs(self) -> dict[str, object]:
        if not self.active:
            return {}
        uid, gid = self._ids()
        return {"user": uid, "group": gid, "extra_groups": []}

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.active:
            base["HOME"] = pwd.getpwnam(self.user).pw_dir
        base.update(env or {})
        return base

    async def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                  timeout: float | None = None, cwd: str = "/", check: bool = True) -> str:
        """Run to completion; returns combined output, raises PostgresError on non-zero exit
        (unless not ``check``)."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=self._env(env), cwd=cwd, start_new_session=True, **self._kwargs())  # type: ignore[arg-type]
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0 and check:
            tail = " | ".join(text.strip().splitlines()[-4:])
            raise e.PostgresError(f"{Path(argv[0]).name} exited with {proc.returncode}: {tail}")
        return text

    async def spawn(self, argv: Sequence[str], log_path: str,
                    env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
        """Start a long-running process in its own session (it survives the agent's death)."""
        log = self.open_log(log_path)  # handed to the child
        try:
            return await asyncio.create_subprocess_exec(
                *argv, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL, env=self._env(env),
                cwd="/", start_new_session=True, **self._kwargs())  # type: ignore[arg-type]
        finally:
            os.close(log)


def replace_file(path: str | Path, text: str | bytes, mode: int = 0o600, owner: tuple[int, int] | None = None,
                 durable: bool = False) -> None:
    """Replace ``path`` atomically with ``text``. The new file is created with its final mode
    (and ``owner``: uid, gid) before a byte is written (never readable by others, not even
    briefly). ``durable``: on disk, file and directory entry, before this returns."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; the mode is exactly what we ask
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(text.encode() if isinstance(text, str) else text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(p)
        if durable:
            dir_fd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
