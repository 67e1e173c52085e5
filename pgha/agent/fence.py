"""The agent's side of the fence (``pgha.fence``): start it, move its deadline, disarm it,
notice when it died or fired. The rule for when it must be armed is ``core.lease.fence_wanted``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pgha.agent.gate import PortGate
from pgha.agent.watchdog import Watchdog
from pgha.core import actions as a
from pgha.core import lease
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import Snapshot
from pgha.log import Repeats

log = logging.getLogger("pgha")

FENCE_SCRIPT = Path(__file__).resolve().parent.parent / "fence" / "__main__.py"
START_TIME = 1.0  # seconds a started fence has to write its pid
MAX_STARTS = 3  # failed starts in a row before the fence counts as broken


def _boottime_offset() -> float:
    """CLOCK_BOOTTIME minus CLOCK_MONOTONIC now (it grows by the time the host was suspended)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()


class Fence:
    def __init__(self, data_dir: str, watchdog: Watchdog | None = None, gate: PortGate | None = None) -> None:
        self.data_dir = data_dir
        self.watchdog = watchdog
        self.gate = gate
        self.state = Path(data_dir + ".fence")
        self.pid_file = Path(data_dir + ".fence.pid")
        self.fired_file = Path(data_dir + ".fence.fired")
        self.deadline: float | None = None  # monotonic; None: disarmed
        self._fired_seen = self.fired()
        self._started_at: float | None = None
        self._starts = 0  # starts since the fence was last seen alive
        self._repeats = Repeats(log)

    @property
    def problem(self) -> str | None:
        """Why leadership must be refused: the watchdog or the port gate is required and cannot
        be used."""
        if self.watchdog is not None and self.watchdog.required_but_unusable:
            return f"watchdog required but unusable ({self.watchdog.required_but_unusable})"
        if self.gate is not None and self.gate.required_but_unusable:
            return f"port gate required but unusable ({self.gate.required_but_unusable})"
        return None

    @property
    def watchdog_state(self) -> str:
        return self.watchdog.describe() if self.watchdog is not None else "off"

    @property
    def gate_state(self) -> str:
        return self.gate.describe() if self.gate is not None else "off"

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def fired(self) -> int:
        try:
            return len(self.fired_file.read_text().splitlines())
        except OSError:
            return 0

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            if b"pgha/fence" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except (OSError, ValueError):
            pass
        return None

    def alive(self) -> bool:
        return self.pid() is not None

    def arm(self, deadline: float) -> bool:
        """Move the deadline (monotonic seconds) and make sure a fence watches it. Never blocks;
        False once starting a fence failed ``MAX_STARTS`` times in a row: the caller must then
        not keep Postgres writable."""
        first = not self.armed
        earlier = first or deadline < (self.deadline or deadline)
        tmp = self.state.with_name(self.state.name + ".tmp")
        try:
            tmp.write_text(f"{deadline + _boottime_offset():.6f}\n")
            tmp.replace(self.state)
        except OSError as exc:
            # A full disk: the fence keeps its earlier deadline and stops Postgres then (sooner
            # than the lease requires, never later); with none written, nothing guards Postgres.
            self._repeats.error(f"cannot move the fence's deadline ({exc}): it stops postgres at its earlier deadline")
            return not first and self.alive()
        self._repeats.clear()
        self.deadline = deadline
        if earlier:
            self._nudge()
        if self.gate is not None and not self.gate.close_in(deadline - time.monotonic()):
            return False
        if self.alive():
            if first or self._starts:
                log.info("fence armed (pid %s): postgres is stopped unless the lease is renewed within %.1f s",
                         self.pid(), deadline - time.monotonic())
            self._starts = 0
            return True
        if self._started_at is not None and time.monotonic() - self._started_at < START_TIME:
            return True  # just started: it writes its pid within milliseconds
        return self._start()

    def _start(self) -> bool:
        if self._starts >= MAX_STARTS:
            return False
        if self._starts:
            log.error("the fence process is gone or did not start: starting it again")
        self._starts += 1
        self._started_at = time.monotonic()
        try:
            # By file, not by module: the fence imports nothing and must start whatever the cwd.
            subprocess.Popen([sys.executable, str(FENCE_SCRIPT), self.data_dir], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             close_fds=True, cwd="/")
        except OSError as exc:
            log.error("cannot start the fence process: %s", exc)
            return self._starts < MAX_STARTS
        return True

    def _nudge(self) -> None:
        """Make the fence look at its state file now: it sleeps up to a second between looks."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)

    def disarm(self, why: str) -> None:
        if self.gate is not None:
            self.gate.open()  # also after the fence fired, which left the gate closed
        if self.deadline is None and not self.state.exists():
            return
        self.deadline = None
        self._starts, self._started_at = 0, None
        self.state.unlink(missing_ok=True)
        self._nudge()
        if self.watchdog is not None:
            self.watchdog.disable()
        log.info("fence disarmed: %s", why)

    def follow(self, s: Snapshot, actions: Sequence[a.Action], valid_until: float | None) -> bool:
        """Arm or disarm for this decision (``core.lease.fence_wanted``); False when it had to be
        armed and could not be."""
        if lease.fence_wanted(s.pg.writable, s.config.pause, actions, s.busy is not None, self.armed):
            wd = self.watchdog
            if wd is not None and not wd.active and (wd.problem is None or wd.mode == "required"):
                if not wd.activate(s.config.ttl):
                    return False  # required and unusable: Postgres must not take writes
                wd.keepalive()
            return self.arm(lease.fence_deadline(valid_until, time.monotonic(), s.config))
        self.disarm("maintenance mode" if s.config.pause else "postgres takes no writes")
        if self.watchdog is not None and self.watchdog.problem is not None:
            self.watchdog.probe()  # a device that appeared since is used next time
        return True

    def extend(self, valid_until: float | None, config: ClusterSettings) -> None:
        """A renewal succeeded: move an armed fence's deadline with the lease, and pet the
        watchdog (only here: a pet must always follow a renewal)."""
        if self.armed:
            if self.watchdog is not None and self.watchdog.active:
                self.watchdog.activate(config.ttl)  # a ttl change moves the timeout too
                self.watchdog.keepalive()
            self.arm(lease.fence_deadline(valid_until, time.monotonic(), config))

    def newly_fired(self) -> int:
        """Firings since the last call (logged: each means the agent failed to keep its lease)."""
        total = self.fired()
        new, self._fired_seen = total - self._fired_seen, total
        if new:
            log.error("the fence fired %d time(s): the lease was not renewed in time and postgres was killed", new)
            self.deadline = None
        return new


__all__ = ["Fence"]
