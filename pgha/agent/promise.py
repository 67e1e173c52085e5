"""The promise this member gave a primary cut off from etcd (failsafe mode): having confirmed it
over ``POST /failsafe``, it does not race for the leader key for ttl. The primary counts on that
promise (its fence fires only ``ttl - retry_timeout/2`` after the round), so it must outlive a
restart of this agent: it is kept in a file beside the data directory.

Times are CLOCK_MONOTONIC, which every process of one boot shares; a promise from an earlier boot
is void (the boot id differs), and one dated in the future cannot be trusted either."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pgha.postgres.runas import replace_file

log = logging.getLogger("pgha")

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


class Promise:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._boot = boot_id()

    def save(self, primary: str, at: float) -> None:
        """Record that ``primary`` asked us at ``at`` (monotonic). Not fsynced: a crash of the
        host ends the boot, and with it the promise."""
        try:
            replace_file(self.path, json.dumps({"primary": primary, "at": at, "boot_id": self._boot}))
        except OSError as exc:
            log.error("could not record the failsafe confirmation given to %s in %s: %s; a restart of this "
                      "agent within ttl would forget it", primary, self.path, exc)

    def load(self) -> tuple[str, float] | None:
        """The promise an earlier run of this agent gave in this boot, if any."""
        try:
            data = json.loads(self.path.read_text())
            primary, at, boot = str(data["primary"]), float(data["at"]), str(data["boot_id"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable failsafe promise file %s: %s", self.path, exc)
            return None
        now = time.monotonic()
        if boot != self._boot or at > now:
            return None
        log.info("an earlier run of this agent confirmed %s as the failsafe primary %.1f s ago: not racing for "
                 "the leader key until ttl after that", primary, now - at)
        return primary, at
