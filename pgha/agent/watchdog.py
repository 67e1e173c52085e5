"""The watchdog device (``/dev/watchdog``): opened with a timeout when this node is about to take
writes, petted on each lease renewal, closed with the magic character when writes stop. If the
agent freezes, nobody pets it and the kernel resets the machine before the lease can expire."""

from __future__ import annotations

import array
import fcntl
import logging
import os

from pgha.config.fence import WatchdogConfig

log = logging.getLogger("pgha")

# linux/watchdog.h: _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int)
WDIOC_KEEPALIVE = 0x80045705
WDIOC_SETTIMEOUT = 0xC0045706
WDIOC_GETTIMEOUT = 0x80045707


def timeout_for(ttl: float, safety_margin: float) -> int:
    """Seconds from a pet to the reset: ``safety_margin`` before a lease renewed at that pet can
    expire (-1: half of ttl), at least one second."""
    margin = ttl / 2 if safety_margin < 0 else safety_margin
    return max(1, int(ttl - margin))


class Watchdog:
    def __init__(self, config: WatchdogConfig) -> None:
        self.config = config
        self._fd: int | None = None
        self.timeout: int | None = None
        self.problem: str | None = None  # why the device cannot be used (None: usable, or mode off)
        self.probe()

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def active(self) -> bool:
        return self._fd is not None

    @property
    def required_but_unusable(self) -> str | None:
        return self.problem if self.mode == "required" else None

    def probe(self) -> None:
        """Whether the device can be opened, without opening it (opening starts the timer)."""
        if self.mode == "off":
            return
        dev = self.config.device
        if not os.path.exists(dev):
            self.problem = f"{dev} does not exist (load a driver, e.g. modprobe softdog)"
        elif not os.access(dev, os.W_OK):
            self.problem = f"{dev} is not writable by this agent"
        else:
            self.problem = None

    def activate(self, ttl: float) -> bool:
        """Open the device with the timeout for ``ttl``; False when required and impossible."""
        if self.mode == "off":
            return True
        want = timeout_for(ttl, self.config.safety_margin)
        if self.active and self.timeout == want:
            return True
        try:
            if self._fd is None:
                self._fd = os.open(self.config.device, os.O_WRONLY)
            fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, array.array("i", [want]), True)
            got = array.array("i", [0])
            fcntl.ioctl(self._fd, WDIOC_GETTIMEOUT, got, True)
            self.timeout = got[0]
            if self.timeout > want:
                raise OSError(f"the device accepted a timeout of {self.timeout} s, longer than the {want} s needed")
        except OSError as exc:
            self.problem = f"cannot activate {self.config.device}: {exc}"
            self.disable()
            log.log(logging.ERROR if self.mode == "required" else logging.WARNING, "watchdog: %s", self.problem)
            return self.mode != "required"
        self.problem = None
        log.info("watchdog %s active: the machine resets %d s after the last lease renewal", self.config.device,
                 self.timeout)
        return True

    def keepalive(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.ioctl(self._fd, WDIOC_KEEPALIVE, array.array("i", [0]), True)
        except OSError as exc:
            log.error("watchdog: keepalive on %s failed: %s", self.config.device, exc)

    def disable(self) -> None:
        """Close with the magic character 'V', which stops the timer (unless the driver was built
        with nowayout, when it keeps counting and resets the machine)."""
        if self._fd is None:
            return
        fd, self._fd, self.timeout = self._fd, None, None
        try:
            os.write(fd, b"V")
        except OSError as exc:
            log.warning("watchdog: could not stop %s cleanly: %s", self.config.device, exc)
        finally:
            os.close(fd)
        log.info("watchdog %s stopped", self.config.device)

    def describe(self) -> str:
        if self.mode == "off":
            return "off"
        if self.active:
            return f"active ({self.timeout} s)"
        return f"unusable: {self.problem}" if self.problem else "inactive"
