"""The agent's HTTP server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from pgha.api.health import HEALTH_PATHS, make_handler

if TYPE_CHECKING:
    from pgha.agent import Agent


class ApiServer:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.app = web.Application()
        handler = make_handler(agent.health, agent.status)
        for path in HEALTH_PATHS:
            for method in ("GET", "HEAD", "OPTIONS"):
                self.app.router.add_route(method, path, handler)
        for path in ("/status", "/patroni"):
            self.app.router.add_get(path, self._status)
        self._runner: web.AppRunner | None = None

    async def _status(self, _: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.agent.status()), content_type="application/json")

    async def start(self) -> None:
        host, _, port = self.agent.cfg.restapi.listen.rpartition(":")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host or "0.0.0.0", int(port), reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
