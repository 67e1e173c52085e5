"""The port gate: the kernel's half of the fence.

The fence process (``pgha.fence``) kills a primary whose lease could expire, but it is a process:
frozen with the rest of its node (a stalled VM, the cgroup freezer), it thaws together with the
backends, and a backend scheduled first runs the statement waiting in its socket and the next ones
its client sends, acknowledged after another node took over (the matrix measured 4 in 0.1 s).

The gate is an nftables set holding Postgres's port, with a timeout on the kernel's own clock that
each lease renewal moves to the fence's deadline. Once the element times out, the kernel answers
every packet to the port with a TCP reset: clients fail at once and reconnect to the new primary,
and no statement sent after the deadline reaches a backend, whatever user space is doing, frozen
or not. Disarmed, the element has no timeout and the port is open.

Packets that come in over the loopback interface pass: the agent's own connections to its
Postgres (to its own address too). A leader whose fence fired restarts Postgres in place, and
when the fence's deadline cannot be moved (a full disk holds its file) the gate stays closed: the
start would wait on a refused port for all of primary_start_timeout. Clients on the node itself,
and a pooler there (its unix socket is never gated anyway), are left to the fence process.

Through libnftables (ctypes: no fork per renewal, no new dependency). Needs CAP_NET_ADMIN in the
network namespace Postgres listens in; ``fence.port_gate`` says whether it is used."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from typing import Literal

log = logging.getLogger("pgha")

GateMode = Literal["off", "automatic", "required"]
SAME_DEADLINE = 0.005  # seconds: a deadline this close to the one set is the same (only the clock read moved)


class GateError(Exception):
    pass


def table(port: int) -> str:
    return f"pgha_gate_{port}"


def setup_script(port: int, new: bool) -> str:
    """The table, set and rule. A new table starts open; one already there is made again without
    touching the set's element: an agent restarted while its gate is closing keeps it closing."""
    t = f"inet {table(port)}"
    return (f"add table {t}\n"
            f"add set {t} open {{ type inet_service; flags timeout; }}\n"
            f"add chain {t} input {{ type filter hook input priority -10; policy accept; }}\n"
            f"flush chain {t} input\n"
            f"add rule {t} input iifname != \"lo\" tcp dport {port} tcp dport != @open reject with tcp reset\n"
            + (element_script(port, None) if new else ""))


def element_script(port: int, seconds: float | None) -> str:
    """Replace the element in one transaction: open for good (None), or for ``seconds``."""
    t = f"inet {table(port)}"
    timeout = "" if seconds is None else f" timeout {max(1, int(seconds * 1000))}ms"
    return f"flush set {t} open\nadd element {t} open {{ {port}{timeout} }}\n"


class _Nft:
    """One libnftables context."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise GateError(f"libnftables is not installed ({exc})") from exc
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise GateError("libnftables could not make a context")
        lib.nft_ctx_buffer_error(self._ctx)
        lib.nft_ctx_buffer_output(self._ctx)

    def succeeds(self, script: str) -> bool:
        return bool(self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode()) == 0)

    def run(self, script: str) -> None:
        if not self.succeeds(script):
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
            raise GateError(err.splitlines()[0] if err else "nftables refused the change")


PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4  # <linux/prctl.h>


def keep_from_children() -> None:
    """Clear the ambient capability set (the agent keeps its own): given CAP_NET_ADMIN that way
    (systemd's ``AmbientCapabilities``), the agent would hand it on to Postgres, and a superuser's
    ``COPY ... TO PROGRAM`` could rewrite the firewall."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


class PortGate:
    def __init__(self, port: int, mode: GateMode) -> None:
        self.port, self.mode = port, mode
        self.problem: str | None = None
        self.closing = False  # the element has a timeout (armed); False: open, or not known yet
        self.known = False  # the element's state is the one this agent set
        self._until: float | None = None  # the monotonic deadline the element's timeout runs to
        self._nft: _Nft | None = None
        if mode != "off":
            self._setup()

    def _setup(self) -> None:
        try:
            nft = _Nft()
            new = not nft.succeeds(f"list table inet {table(self.port)}\n")
            nft.run(setup_script(self.port, new))
        except GateError as exc:
            why = str(exc)
            if "Operation not permitted" in why and os.geteuid() != 0:
                why += " (the agent needs CAP_NET_ADMIN)"
            self.problem = f"cannot set up the port gate for port {self.port}: {why}"
            level = logging.ERROR if self.mode == "required" else logging.WARNING
            log.log(level, "%s; %s", self.problem,
                    "leadership is refused" if self.mode == "required" else "the fence runs without it")
            return
        self._nft, self.known = nft, new
        keep_from_children()
        log.info("port gate ready: nftables table inet %s rejects packets to port %d once the fence's "
                 "deadline passes", table(self.port), self.port)

    @property
    def active(self) -> bool:
        return self._nft is not None

    def describe(self) -> str:
        if self.mode == "off":
            return "off"
        if self._nft is None:
            return f"unusable: {self.problem}"
        return "closing" if self.closing else "open"

    @property
    def required_but_unusable(self) -> str | None:
        return self.problem if self.mode == "required" else None

    def close_in(self, seconds: float) -> bool:
        """The port closes ``seconds`` from now unless moved again; False when that could not be
        set (the caller treats a required gate like a fence that did not start)."""
        if self._nft is None:
            return self.mode != "required"
        until = time.monotonic() + seconds
        if self.closing and self._until is not None and abs(until - self._until) < SAME_DEADLINE:
            return True  # the fence is armed every loop, renewed less often: the kernel's timer runs on
        try:
            self._nft.run(element_script(self.port, seconds))
        except GateError as exc:
            log.error("cannot move the port gate's deadline: %s", exc)
            return self.mode != "required"
        self.closing = self.known = True
        self._until = until
        return True

    def open(self) -> None:
        if self._nft is None or (self.known and not self.closing):
            return
        try:
            self._nft.run(element_script(self.port, None))
        except GateError as exc:
            log.error("cannot open the port gate of port %d: %s", self.port, exc)
            return
        self.closing, self.known, self._until = False, True, None
        log.info("port gate open: port %d takes connections", self.port)

    def remove(self) -> None:
        """Drop the table (tests; an agent leaves its gate in place when it stops, as it leaves
        its fence)."""
        if self._nft is not None:
            try:
                self._nft.run(f"delete table inet {table(self.port)}\n")
            except GateError as exc:
                log.warning("cannot remove the port gate's table: %s", exc)
            self._nft = None


__all__ = ["GateError", "GateMode", "PortGate", "element_script", "setup_script", "table"]
