"""HAProxy's side of the watcher: role changes pushed through its runtime API, so that routing
does not wait for the next health checks (``inter`` × ``fall``). The checks stay on and remain
the fallback: a pushed health state holds only until the next check says otherwise, and the
admin state ``drain`` is set only on the primary handing over and lifted afterwards.

Servers of the write backend are named after the members (as in configs/haproxy.cfg).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from pgha import errors as e
from pgha.pooler.config import HAProxyTarget

log = logging.getLogger("pgha.pooler")

TIMEOUT = 1.0


class HAProxyDriver:
    def __init__(self, cfg: HAProxyTarget) -> None:
        self.cfg = cfg
        self.reachable = True

    async def _send(self, commands: Iterable[str]) -> str:
        """One connection, the commands separated by ';' (HAProxy's non-interactive mode)."""
        line = "; ".join(commands) + "\n"
        try:
            async with asyncio.timeout(TIMEOUT):
                if ":" in self.cfg.socket and not self.cfg.socket.startswith("/"):
                    host, _, port = self.cfg.socket.rpartition(":")
                    reader, writer = await asyncio.open_connection(host, int(port))
                else:
                    reader, writer = await asyncio.open_unix_connection(self.cfg.socket)
                writer.write(line.encode())
                await writer.drain()
                out = (await reader.read()).decode(errors="replace")
                writer.close()
        except (OSError, TimeoutError) as exc:
            if self.reachable:
                log.warning("HAProxy runtime API at %s unreachable (%s): routing falls back to its health checks",
                            self.cfg.socket, exc)
            self.reachable = False
            raise e.PghaError(f"HAProxy runtime API at {self.cfg.socket}: {exc}") from exc
        if not self.reachable:
            log.info("HAProxy runtime API at %s reachable again: pushing role changes", self.cfg.socket)
        self.reachable = True
        return out

    async def servers(self) -> list[str]:
        """The write backend's server names."""
        out = await self._send([f"show servers state {self.cfg.primary_backend}"])
        names = []
        for row in out.splitlines():
            cols = row.split()
            if len(cols) > 3 and cols[0].isdigit() and cols[1] == self.cfg.primary_backend:
                names.append(cols[3])
        return names

    async def set_reads(self, drained: set[str], undrained: set[str], streaming: set[str]) -> None:
        """In the replicas backend: ``undrained`` servers ready again, up at once if ``streaming``
        (their next check confirms it, or takes them down again); then ``drained`` ones take no new
        sessions (their own run on). In that order: the replica back from a restart takes reads
        before the next one stops taking them, not a check interval later."""
        b = self.cfg.replicas_backend
        cmds = []
        for n in sorted(undrained):
            cmds += [f"set server {b}/{n} state ready"] + ([f"set server {b}/{n} health up"] if n in streaming else [])
        cmds += [f"set server {b}/{n} state drain" for n in sorted(drained)]
        if b and cmds:
            await self._send(cmds)

    async def drain(self, server: str, cut: bool) -> None:
        """No new connections to ``server``; ``cut`` also ends the ones it has (it may no
        longer take writes: its leader key is gone or held by another member)."""
        b = self.cfg.primary_backend
        cmds = [f"set server {b}/{server} state drain"]
        if cut:
            cmds += [f"set server {b}/{server} health down", f"shutdown sessions server {b}/{server}"]
        await self._send(cmds)

    async def route_to(self, target: str | None) -> None:
        """``target`` up and ready, every other server of the write backend down (None: all down)."""
        b = self.cfg.primary_backend
        cmds = []
        for name in await self.servers():
            if name == target:
                cmds += [f"set server {b}/{name} state ready", f"set server {b}/{name} health up"]
            else:
                cmds += [f"set server {b}/{name} state ready", f"set server {b}/{name} health down",
                         f"shutdown sessions server {b}/{name}"]
        if cmds:
            await self._send(cmds)
