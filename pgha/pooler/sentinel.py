"""A TCP connection held open to the confirmed primary's agent, as an early sign of its death.

The watcher probes ``/primary`` every ``probe_interval``; statements sent between a primary's
death and the next probe meet a dead server and fail (PgBouncer fails new clients at once while
it cannot log in). When the agent's process dies, or its node's processes are killed, the kernel
closes its sockets at once: the close reaches the watcher within milliseconds, and the watcher
probes at once instead of at the next interval. The close proves nothing by itself (the agent
restarting, or closing an idle connection, looks the same): it only brings the probe forward.
A node that vanishes without closing anything (power loss, a cut cable) is left to the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger("pgha.pooler")

RETRY = 0.2  # before holding a connection again after a close


class Sentinel:
    def __init__(self, on_close: Callable[[str], None]) -> None:
        self.on_close = on_close
        self.name: str | None = None
        self.task: asyncio.Task[None] | None = None

    def watch(self, name: str | None, api_url: str = "") -> None:
        """Hold a connection to ``name``'s agent at ``api_url`` (None: to nobody)."""
        if name == self.name:
            return
        self.stop()
        self.name = name
        parts = urlsplit(api_url)
        if name is not None and parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.task = asyncio.create_task(self._hold(name, parts.hostname, port))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.task, self.name = None, None

    async def _hold(self, name: str, host: str, port: int) -> None:
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(host, port)
                while await reader.read(4096):
                    pass  # nothing is asked, so nothing should come; only the close matters
            except OSError as exc:
                log.debug("sentinel connection to %s: %s", name, exc)
            finally:
                if writer is not None:
                    writer.close()
            self.on_close(name)
            await asyncio.sleep(RETRY)


async def stopped(s: Sentinel) -> None:
    """Stop ``s`` and wait for its task to end."""
    task = s.task
    s.stop()
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
