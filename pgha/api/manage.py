"""Management endpoints: parse the request, hand it to ``pgha.ops`` or the operator inbox,
format the answer.

Every malformed body gets 400 with the reason and changes nothing; refusals say why (409/412)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pgha import errors as e
from pgha import ops
from pgha.api.context import MAX_BODY, context
from pgha.config.load import normalized, parse_dynamic_config
from pgha.core import schedule
from pgha.core.cluster import ClusterView
from pgha.core.requests import LivePositions, merge_patch

_NUMBER = (int, float)
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _answer(o: ops.Outcome) -> web.Response:
    if o.status >= 400:
        return _error(o.status, o.message)
    body: dict[str, Any] = {"message": o.message}
    if o.leader is not None:
        body["leader"] = o.leader
    return web.json_response(body, status=o.status)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); anything else is a 400 (413 when
    larger than the server takes)."""
    try:
        raw = await request.read() if request.can_read_body else b""
    except web.HTTPRequestEntityTooLarge as exc:
        raise e.BadRequest(f"body larger than {request.app[MAX_BODY]} bytes", status=413) from exc
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise e.BadRequest(f"body is not UTF-8 (byte {exc.start})") from exc
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise e.BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise e.BadRequest("body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise e.BadRequest(f"body must be a JSON object, not {type(body).__name__}")
    return body


async def read_body(request: web.Request, fields: dict[str, tuple[type, ...]],
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    body = await read_object(request)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise e.BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    for key, types in fields.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise e.BadRequest(f"{key} must be {' or '.join(t.__name__ for t in types)}, not {type(value).__name__}")
    for key in required:
        if body.get(key) in (None, ""):
            raise e.BadRequest(f"{key} is required")
    return body


def parse_time(value: str, field: str) -> float:
    try:
        return schedule.parse(value, field, time.time())
    except ValueError as exc:
        raise e.BadRequest(str(exc)) from exc


def _guard(fn: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await fn(request)
        except (e.BadRequest, e.OperationRefused) as exc:
            return _error(exc.status, str(exc))
        except e.ConfigTooLarge as exc:
            return _error(413, str(exc))
        except e.ConfigError as exc:
            return _error(400, str(exc))
        except e.DcsError as exc:
            return _error(503, f"etcd unavailable: {exc}")

    return wrapped


# -- dynamic config --------------------------------------------------------------------


async def _store_config(request: web.Request, make: Callable[[ClusterView, dict[str, Any]], dict[str, Any]],
                        source: str) -> web.Response:
    ctx = context(request)
    body = await read_object(request)
    deadline = ctx.dynamic().retry_timeout
    view = await ctx.store.load(deadline)
    tag = request.headers.get("If-Match")
    if tag is not None and tag.strip('"') != str(view.config_revision):
        raise e.OperationRefused(f"config changed since revision {tag} (now {view.config_revision})", 409)
    new = normalized(make(view, body), source)
    problems = ctx.check_parameters(dict(parse_dynamic_config(new, source).postgresql.parameters))
    if problems:
        raise e.BadRequest(f"{source}: postgres refuses " + "; ".join(problems))
    if not await ctx.store.set_config(new, view.config_revision, deadline):
        return _error(409, "config was changed concurrently; read it again and retry")
    ctx.inbox.wake()
    return web.json_response(new)


@_guard
async def patch_config(request: web.Request) -> web.Response:
    def merged(view: ClusterView, patch: dict[str, Any]) -> dict[str, Any]:
        return merge_patch(json.loads(view.config_raw) if view.config_raw else {}, patch)

    return await _store_config(request, merged, "PATCH /config")


@_guard
async def put_config(request: web.Request) -> web.Response:
    return await _store_config(request, lambda _, body: body, "PUT /config")


# -- leadership ------------------------------------------------------------------------


@_guard
async def switchover(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, {"leader": (str,), "candidate": (str,), "scheduled_at": (str,)},
                           required=("leader",))
    at = parse_time(body["scheduled_at"], "scheduled_at") if body.get("scheduled_at") else None
    r = ctx.report()

    def live(view: ClusterView) -> LivePositions | None:
        # Only the leader has live positions; without them lag is left to the leader to judge.
        return LivePositions(r.pg.lsn, r.pg.replica_lsns) if view.leader == r.name and r.pg.writable else None

    outcome = await ops.switchover(ctx.store, ctx.dynamic(), body["leader"], body.get("candidate"), at, live)
    if at is not None:
        return web.json_response({"message": f"switchover scheduled at {body['scheduled_at']}"}, status=202)
    return _answer(outcome)


@_guard
async def cancel_switchover(request: web.Request) -> web.Response:
    ctx = context(request)
    return _answer(await ops.cancel_switchover(ctx.store, ctx.dynamic()))


@_guard
async def failover(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, {"candidate": (str,), "leader": (str,)}, required=("candidate",))
    return _answer(await ops.failover(ctx.store, ctx.dynamic(), body["candidate"], body.get("leader")))


# -- the local Postgres ----------------------------------------------------------------


@_guard
async def restart(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, {"restart_pending": (bool,), "role": (str,), "schedule": (str,),
                                     "timeout": _NUMBER})
    if body.get("timeout") is not None and not 1 <= body["timeout"] <= 3600:
        raise e.BadRequest("timeout must be between 1 and 3600 seconds")
    role = body.get("role")
    if role is not None and role not in ("primary", "replica", "master"):
        raise e.BadRequest("role must be primary or replica")
    at = parse_time(body["schedule"], "schedule") if body.get("schedule") else None
    pg = ctx.report().pg
    my_role = "primary" if pg.writable else "replica"
    if role is not None and {"master": "primary"}.get(role, role) != my_role:
        return _error(412, f"restart conditions are not satisfied: this node is a {my_role}")
    if body.get("restart_pending") and not pg.pending_restart:
        return _error(412, "restart conditions are not satisfied: no pending restart")
    if not pg.running:
        return _error(503, "postgres is not running")
    if at is not None:
        ctx.inbox.request_restart(at)
        return web.json_response({"message": f"restart scheduled at {body['schedule']}"}, status=202)
    return _answer(await ops.restart_now(ctx.inbox, lambda: ctx.report().counters.restarts,
                                         float(body.get("timeout") or 120)))


@_guard
async def cancel_restart(request: web.Request) -> web.Response:
    if not context(request).inbox.cancel_restart():
        return _error(404, "no scheduled restart")
    return web.json_response({"message": "scheduled restart cancelled"})


@_guard
async def reload(request: web.Request) -> web.Response:
    ctx = context(request)
    await read_body(request, {})
    if not ctx.report().pg.running:
        return _error(503, "postgres is not running")
    return _answer(await ops.reload_now(ctx.inbox, lambda: ctx.report().counters.reloads, 30.0))


@_guard
async def reinitialize(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, {"force": (bool,)})
    r = ctx.report()
    if r.view.leader == r.name:
        return _error(412, "cannot reinitialize the leader; switch over first")
    if r.view.leader is None:
        return _error(503, "the cluster has no leader to clone from")
    if r.busy is not None and not body.get("force"):
        return _error(503, f"{r.busy}; use force to reinitialize anyway")
    ctx.inbox.request_reinit()
    return web.json_response({"message": "reinitialize started"})


ROUTES = [web.patch("/config", patch_config), web.put("/config", put_config),
          web.post("/switchover", switchover), web.delete("/switchover", cancel_switchover),
          web.post("/failover", failover), web.post("/restart", restart), web.delete("/restart", cancel_restart),
          web.post("/reload", reload), web.post("/reinitialize", reinitialize)]
