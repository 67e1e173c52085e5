"""The agent's HTTP(S) server: routes from each API module behind the write guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pgha.api import manage, metrics, views
from pgha.api.health import HEALTH_PATHS, make_handler
from pgha.api.security import middleware, ssl_context

if TYPE_CHECKING:
    from pgha.agent import Agent


def build_app(agent: Agent) -> web.Application:
    def member_hosts() -> list[str]:
        return [m.host for m in agent.view.members.values()]

    app = web.Application(middlewares=[middleware(agent.cfg.restapi, member_hosts)], client_max_size=1 << 20)
    handler = make_handler(agent.health, agent.status)
    for path in HEALTH_PATHS:
        for method in ("GET", "HEAD", "OPTIONS"):
            app.router.add_route(method, path, handler)
    app.add_routes(views.routes(agent))
    app.add_routes(manage.routes(agent))
    app.add_routes(metrics.routes(agent))
    return app


class ApiServer:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        cfg = self.agent.cfg.restapi
        host, _, port = cfg.listen.rpartition(":")
        self._runner = web.AppRunner(build_app(self.agent), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or "0.0.0.0", int(port), reuse_address=True, ssl_context=ssl_context(cfg))
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
