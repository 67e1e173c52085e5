"""User callbacks (``postgresql.callbacks``), run as Patroni runs them: ``<script> <action> <role>
<scope>``, in the background, each with a timeout.

Nothing here is awaited by the HA loop or by a demotion: ``fire`` only starts a task. A newer
role change kills a role-change script still running, as Patroni does, so that a slow VIP script
cannot add the address back after the next change removed it."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import time
from dataclasses import dataclass, field

from pgha.config.model import Callbacks

log = logging.getLogger(__name__)

ACTIONS = ("on_start", "on_stop", "on_restart", "on_reload", "on_role_change")


@dataclass
class CallbackStats:
    """Per action: runs, failures (non-zero exit, timeout, could not start), total seconds."""

    runs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, tuple[int, int, float]]:
        return {a: (n, self.failures.get(a, 0), self.seconds.get(a, 0.0)) for a, n in self.runs.items()}

    def record(self, action: str, ok: bool, took: float) -> None:
        self.runs[action] = self.runs.get(action, 0) + 1
        self.failures[action] = self.failures.get(action, 0) + (0 if ok else 1)
        self.seconds[action] = self.seconds.get(action, 0.0) + took


class CallbackRunner:
    def __init__(self, config: Callbacks, scope: str) -> None:
        self.config = config
        self.scope = scope
        self.stats = CallbackStats()
        self._role_change: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def fire(self, action: str, role: str) -> None:
        """Start the script for ``action``, if one is configured; returns at once."""
        script = getattr(self.config, action, None)
        if not script:
            return
        if action == "on_role_change" and self._role_change is not None and not self._role_change.done():
            self._role_change.cancel()  # the newer role wins; the older script is killed
        task = asyncio.get_running_loop().create_task(self._run(script, action, role))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if action == "on_role_change":
            self._role_change = task

    async def _run(self, script: str, action: str, role: str) -> None:
        argv = [*shlex.split(script), action, role, self.scope]
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self.stats.record(action, False, time.monotonic() - t0)
            log.error("callback %s (%s) could not start: %s", action, argv[0], exc)
            return
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.config.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            _kill_group(proc.pid)
            await proc.wait()
            took = time.monotonic() - t0
            self.stats.record(action, False, took)
            why = f"timed out after {took:.1f} s" if isinstance(exc, TimeoutError) else "superseded"
            log.warning("callback %s %s %s: %s, killed", action, role, argv[0], why)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        took = time.monotonic() - t0
        ok = proc.returncode == 0
        self.stats.record(action, ok, took)
        tail = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
        (log.info if ok else log.warning)("callback %s %s exited with %s in %.2f s%s", action, role, proc.returncode,
                                          took, f": {tail[0][:200]}" if tail else "")

    async def close(self) -> None:
        """Let running callbacks finish (within their timeout) before the agent exits."""
        if self._tasks:
            # Each callback's own timeout starts once its task runs, and a kill takes a moment:
            # waiting only ``timeout`` from here would cancel one a hair before its own ran out.
            await asyncio.wait(set(self._tasks), timeout=self.config.timeout + 1.0)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
