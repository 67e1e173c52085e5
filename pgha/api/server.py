"""The agent's HTTP(S) server: routes from each API module behind the write guard."""

from __future__ import annotations

import asyncio
import logging
import resource

from aiohttp import web

from pgha.api import backup, failsafe, manage, metrics, rollout, ui, views
from pgha.api.connections import ConnectionPool
from pgha.api.context import CONTEXT, MAX_BODY, ApiContext
from pgha.api.health import HEALTH_PATHS, archive_check, handle
from pgha.api.security import Handler, middleware, ssl_context

__all__ = ["ApiContext", "ApiServer", "build_app"]

log = logging.getLogger("pgha")
MAX_BODY_BYTES = 256 * 1024  # a request body; the dynamic config itself is capped lower


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error the API answers is a JSON ``{"error": ...}``, aiohttp's own ones included."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers={
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")})
    except Exception as exc:  # noqa: BLE001 - a bug must answer JSON, not a traceback
        log.exception("REST API: %s %s failed", request.method, request.path)
        return web.json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)


def build_app(ctx: ApiContext) -> web.Application:
    def member_hosts() -> list[str]:
        return [m.host for m in ctx.report().view.members.values()]

    app = web.Application(middlewares=[errors_as_json, middleware(ctx.local.restapi, member_hosts)],
                          client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = ctx
    app[MAX_BODY] = MAX_BODY_BYTES
    for path in HEALTH_PATHS:
        for method in ("GET", "HEAD", "OPTIONS"):
            app.router.add_route(method, path, handle)
    for method in ("GET", "HEAD"):
        app.router.add_route(method, "/archive", archive_check)
    app.add_routes(views.ROUTES)
    app.add_routes(manage.ROUTES)
    app.add_routes(rollout.ROUTES)
    app.add_routes(backup.ROUTES)
    app.add_routes(failsafe.ROUTES)
    app.add_routes(ui.ROUTES)
    metrics.install(app)
    return app


BACKLOG = 64  # also how many connections asyncio accepts in one go, before any is admitted


def connection_limit() -> int:
    """Well below the open-file limit: the agent's own connections (etcd, Postgres, its logs)
    must always find a descriptor, even while a burst of accepted connections waits to be
    admitted or evicted."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(1024, soft - 2 * BACKLOG - 200))


class ApiServer:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.pool = ConnectionPool(connection_limit())

    async def start(self) -> None:
        cfg = self.ctx.local.restapi
        host, _, port = cfg.listen.rpartition(":")
        # An idle keep-alive connection is closed after 10 s (aiohttp's default is an hour).
        self._runner = web.AppRunner(build_app(self.ctx), access_log=None, handle_signals=False,
                                     keepalive_timeout=10)
        await self._runner.setup()
        assert self._runner.server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.pool.wrap(self._runner.server), host or "0.0.0.0", int(port), reuse_address=True,
            ssl=ssl_context(cfg), backlog=BACKLOG)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
