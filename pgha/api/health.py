"""Health-check handlers: translate a request into ``core.health.verdict`` and back.

The verdict never depends on the body: if the status body cannot be built, the check still
answers its code (HAProxy reads only that)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from pgha.api.context import context
from pgha.core import archive, report
from pgha.core.health import verdict

log = logging.getLogger("pgha")

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
    try:
        body = json.dumps(report.status(r, now, time.time()))
    except Exception as exc:  # noqa: BLE001 - a broken body must not break the check
        log.error("could not build the status body: %r", exc)
        body = json.dumps({"error": "status unavailable", "name": r.name})
    return web.Response(status=code, text=body, content_type="application/json")


async def archive_check(request: web.Request) -> web.Response:
    """``/archive``: 503 once WAL waits longer than ``archive.max_delay`` to be archived (or
    archiving is off), so a monitoring check can page; ``/health`` stays as Patroni defines it."""
    r = context(request).report()
    wall = time.time()
    why = report.archive_problem(r, wall)
    if request.method == "HEAD":
        return web.Response(status=503 if why else 200)
    facts = r.facts.archive if r.pg.running else None
    body = {"name": r.name, "role": r.pg.role, "archive": archive.body(facts, wall), "problem": why}
    return web.json_response(body, status=503 if why else 200)
