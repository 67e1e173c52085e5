"""The agent's HTTP(S) server: routes from each API module behind the write guard."""

from __future__ import annotations

from aiohttp import web

from pgha.api import manage, metrics, views
from pgha.api.context import CONTEXT, ApiContext
from pgha.api.health import HEALTH_PATHS, handle
from pgha.api.security import middleware, ssl_context

__all__ = ["ApiContext", "ApiServer", "build_app"]


def build_app(ctx: ApiContext) -> web.Application:
    def member_hosts() -> list[str]:
        return [m.host for m in ctx.report().view.members.values()]

    app = web.Application(middlewares=[middleware(ctx.local.restapi, member_hosts)], client_max_size=1 << 20)
    app[CONTEXT] = ctx
    for path in HEALTH_PATHS:
        for method in ("GET", "HEAD", "OPTIONS"):
            app.router.add_route(method, path, handle)
    app.add_routes(views.ROUTES)
    app.add_routes(manage.ROUTES)
    metrics.install(app)
    return app


class ApiServer:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        cfg = self.ctx.local.restapi
        host, _, port = cfg.listen.rpartition(":")
        self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or "0.0.0.0", int(port), reuse_address=True, ssl_context=ssl_context(cfg))
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
