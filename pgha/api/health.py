"""Health-check handlers: translate a request into ``core.health.verdict`` and back."""

from __future__ import annotations

import json
import time

from aiohttp import web

from pgha.api.context import context
from pgha.core import report
from pgha.core.health import verdict

HEALTH_PATHS = ("/", "/primary", "/master", "/leader", "/read-write", "/standby-leader", "/replica",
                "/read-only", "/sync", "/synchronous", "/async", "/health", "/liveness", "/readiness")


async def handle(request: web.Request) -> web.Response:
    r = context(request).report()
    now = time.monotonic()
    try:
        code = verdict(request.path, request.query, report.health(r, now))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if request.method == "HEAD":
        return web.Response(status=code)
    body = json.dumps(report.status(r, now, time.time()))
    return web.Response(status=code, text=body, content_type="application/json")
