"""Rolling restart endpoints: ``POST /rollout`` starts one (the cluster carries it out, see
``core.rollout``), ``DELETE /rollout`` asks it to stop after the member in progress, ``GET
/rollout`` shows it. Any member answers; the record lives in etcd."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from pgha import errors as e
from pgha.api.context import context
from pgha.api.manage import _error, _guard, read_body
from pgha.core.fitness import LivePositions
from pgha.core.health import parse_size
from pgha.core.requests import check_rollout
from pgha.core.rollout import Rollout, older_binary

_NUMBER = (int, float)
FIELDS: dict[str, tuple[type, ...]] = {
    "members": (list,), "pending": (bool,), "older_than_installed": (bool,), "max_lag": (int, str),
    "drain": _NUMBER, "member_timeout": _NUMBER}


def _max_lag(value: int | str | None, default: int) -> int:
    if value is None:
        return default
    try:
        lag = value if isinstance(value, int) else parse_size(value)
    except ValueError as exc:
        raise e.BadRequest(f"max_lag: {exc}") from exc
    if lag < 0:
        raise e.BadRequest("max_lag must not be negative")
    return lag


def _seconds(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if not low <= value <= high:
        raise e.BadRequest(f"{key} must be between {low:g} and {high:g} seconds")
    return float(value)


@_guard
async def start(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request, FIELDS)
    if not all(isinstance(m, str) for m in body.get("members") or []):
        raise e.BadRequest("members must be a list of member names")
    config, r = ctx.dynamic(), ctx.report()
    view = await ctx.store.load(config.retry_timeout)
    max_lag = _max_lag(body.get("max_lag"), min(config.maximum_lag_on_failover, 16 << 20))
    names = list(body.get("members") or sorted(view.members))
    pending, older = bool(body.get("pending")), bool(body.get("older_than_installed"))
    unknown = [n for n in names if n not in view.members]
    if unknown:
        raise e.OperationRefused(f"not a member of the cluster: {', '.join(unknown)}")
    # Each member is judged when its turn comes (a parameter change reaches members a loop
    # apart); here only whether anyone needs a restart at all.
    wanted = [n for n in names if (not pending or view.members[n].pending_restart)
              and (not older or older_binary(view.members[n].pending_restart_reason))]
    if not wanted:
        return web.json_response({"message": "nothing to restart"})
    live = LivePositions(r.pg.lsn, r.pg.replica_lsns) if view.leader == r.name and r.pg.writable else None
    refusal = check_rollout(view, config, names, max_lag, live)
    if refusal is not None:
        return _error(refusal.status, refusal.reason)
    # replicas first, the leader last (it switches over)
    order = tuple(sorted(n for n in names if n != view.leader)) + tuple(n for n in names if n == view.leader)
    record = Rollout(members=order, pending_only=pending, older_only=older, max_lag=max_lag,
                     drain=_seconds(body, "drain", 10.0, 0, 3600),
                     member_timeout=_seconds(body, "member_timeout", 300.0, 10, 86400),
                     started=time.time(), revision=view.rollout.revision if view.rollout else 0)
    if not await ctx.store.write_rollout(record, None, config.retry_timeout):
        return _error(409, "the rollout key changed concurrently; read it again and retry")
    ctx.inbox.wake()
    return web.json_response({"message": f"rolling restart of {', '.join(order)} started",
                              "rollout": record.body()}, status=202)


@_guard
async def abort(request: web.Request) -> web.Response:
    ctx = context(request)
    config = ctx.dynamic()
    view = await ctx.store.load(config.retry_timeout)
    r = view.rollout
    if r is None or not r.running:
        return _error(412, "no rolling restart is running")
    if not await ctx.store.write_rollout(replace(r, abort=True), None, config.retry_timeout):
        return _error(409, "the rollout moved on meanwhile; try again")
    ctx.inbox.wake()
    tail = f" after {r.current}" if r.current else ""
    return web.json_response({"message": f"rolling restart stops{tail}"})


@_guard
async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    view = await ctx.store.load(ctx.dynamic().retry_timeout)
    if view.rollout is None:
        return _error(404, "no rolling restart recorded")
    return web.json_response(view.rollout.body())


ROUTES = [web.post("/rollout", start), web.delete("/rollout", abort), web.get("/rollout", show)]
