"""Base backup endpoints (``core.backup``): ``POST /backup`` asks for one, on the leader (a standby
backup needs the primary's data directory, which only the leader's agent knows); ``GET /backup``
shows the last or running one. The member named in the ``backup`` key runs it."""

from __future__ import annotations

import time

from aiohttp import web

from pgha.api.context import context
from pgha.api.manage import _error, _guard, read_body
from pgha.core import backup
from pgha.core.requests import Refusal, backup_member, check_backup

FIELDS: dict[str, tuple[type, ...]] = {"type": (str,), "from": (str,)}


@_guard
async def start(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, FIELDS)
    config, r = ctx.dynamic(), ctx.report()
    view = await ctx.store.load(config.retry_timeout)
    if view.leader != r.name:
        leader = view.members.get(view.leader or "")
        where = f": ask {view.leader} ({leader.api_url})" if leader is not None else ""
        return _error(412, f"{r.name} is not the leader{where}")
    kind = str(body.get("type") or config.backup.type)
    refusal = check_backup(view, config, kind)
    member = backup_member(view, str(body.get("from") or config.backup.source)) if refusal is None else refusal
    if isinstance(member, Refusal):
        return _error(member.status, member.reason)
    pg = ctx.local.postgresql
    record = backup.request(view, member, kind, "pgha backup", (pg.host, pg.port, pg.data_dir), time.time())
    if not await ctx.store.write_backup(record, config.retry_timeout):
        return _error(409, "the backup key changed concurrently; read it again and retry")
    ctx.inbox.wake()
    return web.json_response({"message": f"{record.progress()}", "backup": record.body()}, status=202)


@_guard
async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    view = await ctx.store.load(ctx.dynamic().retry_timeout)
    if view.backup is None:
        return _error(404, "no backup recorded")
    return web.json_response(view.backup.body())


ROUTES = [web.post("/backup", start), web.get("/backup", show)]
