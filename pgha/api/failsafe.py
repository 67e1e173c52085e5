"""``/failsafe``, as Patroni serves it: ``GET`` shows the ``failsafe`` key, ``POST`` is a
primary cut off from etcd asking this member to confirm it (``pgha.core.failsafe``).

A member accepts (200 ``Accepted``, with its WAL position in the ``lsn`` header) unless it runs
as a primary or holds the leader key itself (500); having accepted, it does not race for the
leader key for ttl. Both answer 502 when failsafe mode is off."""

from __future__ import annotations

import time

from aiohttp import web

from pgha import errors as e
from pgha.api.context import context
from pgha.api.manage import read_object
from pgha.core import failsafe


def _off() -> web.Response:
    return web.json_response({"error": "failsafe_mode is not enabled"}, status=502)


async def get_failsafe(request: web.Request) -> web.Response:
    ctx = context(request)
    members = ctx.report().view.failsafe
    if not failsafe.enabled(ctx.dynamic()) or members is None:
        return _off()
    return web.json_response(dict(members))


async def post_failsafe(request: web.Request) -> web.Response:
    ctx = context(request)
    if not failsafe.enabled(ctx.dynamic()):
        return _off()
    try:
        body = await read_object(request)
    except e.BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return web.json_response({"error": "name is required: the member asking to be confirmed"}, status=400)
    r = ctx.report()
    if name == r.name:
        return web.json_response({"error": f"{name} is this member"}, status=400)
    refused = failsafe.refusal(r.pg.writable, r.view.leader == r.name)
    if refused is not None:
        return web.Response(status=500, text=refused)
    ctx.inbox.failsafe_asked(name, time.monotonic())
    return web.Response(status=200, text="Accepted", headers={"lsn": str(r.pg.lsn)})


ROUTES = [web.get("/failsafe", get_failsafe), web.post("/failsafe", post_failsafe)]
