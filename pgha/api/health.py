"""Health-check handlers: translate a request into ``core.health.verdict`` and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pgha.core.health import NodeHealth, verdict

HEALTH_PATHS = ("/", "/primary", "/master", "/leader", "/read-write", "/standby-leader", "/replica",
                "/read-only", "/sync", "/async", "/health", "/liveness", "/readiness")


def make_handler(health: Callable[[], NodeHealth], status: Callable[[], dict[str, Any]]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        try:
            code = verdict(request.path, request.query, health())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if request.method == "HEAD":
            return web.Response(status=code)
        return web.Response(status=code, text=json.dumps(status()), content_type="application/json")

    return handle
