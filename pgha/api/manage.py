"""Management endpoints: parse and check the request, hand it to the agent or to etcd, answer.

Every malformed body gets 400 with the reason and changes nothing; refusals say why (409/412)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pgha import errors as e
from pgha.config.load import parse_dynamic_config
from pgha.core.cluster import FailoverRequest
from pgha.core.requests import LivePositions, check_failover, check_switchover, merge_patch

if TYPE_CHECKING:
    from pgha.agent import Agent

_NUMBER = (int, float)


class BadRequest(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``); anything else is a 400."""
    text = await request.text() if request.can_read_body else ""
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, not {type(body).__name__}")
    return body


async def read_body(request: web.Request, fields: dict[str, tuple[type, ...]],
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    body = await read_object(request)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    for key, types in fields.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise BadRequest(f"{key} must be {' or '.join(t.__name__ for t in types)}, not {type(value).__name__}")
    for key in required:
        if body.get(key) in (None, ""):
            raise BadRequest(f"{key} is required")
    return body


def parse_time(value: str, field: str) -> float:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{field} must be an ISO 8601 time such as 2026-11-26T14:00:00+00:00") from exc
    if when.tzinfo is None:
        raise BadRequest(f"{field} needs a timezone (for example +00:00)")
    ts = when.timestamp()
    if ts < time.time() - 1:
        raise BadRequest(f"{field} is in the past")
    return ts


def _guard(fn: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await fn(request)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        except e.ConfigError as exc:
            return _error(400, str(exc))
        except e.DcsError as exc:
            return _error(503, f"etcd unavailable: {exc}")
        except e.OperationRefused as exc:
            return _error(exc.status, str(exc))

    return wrapped


def routes(agent: Agent) -> list[web.RouteDef]:
    deadline = lambda: agent.config.retry_timeout  # noqa: E731

    async def wait_for_leader(want: Callable[[str | None], bool], timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            view = await agent.store.load(deadline())
            if view.failover is None and want(view.leader):
                return view.leader
            await asyncio.sleep(0.1)
        return None

    async def complete(want: Callable[[str | None], bool], what: str, done: Callable[[str], str]) -> web.Response:
        """Wait for the requested leader change; withdraw the request if it does not happen."""
        timeout = agent.config.ttl * 2 + agent.config.retry_timeout
        new = await wait_for_leader(want, timeout)
        if new is None:
            view = await agent.store.load(deadline())
            await agent.store.clear_failover(view.failover_revision, deadline())
            return _error(503, f"{what} did not complete within {timeout:.0f}s; see the agents' logs")
        return web.json_response({"message": done(new), "leader": new})

    def _if_match(request: web.Request, revision: int) -> None:
        tag = request.headers.get("If-Match")
        if tag is not None and tag.strip('"') != str(revision):
            raise BadRequest(f"config changed since revision {tag} (now {revision})", status=409)

    async def _store_config(request: web.Request, new: dict[str, Any], revision: int, source: str) -> web.Response:
        parse_dynamic_config(new, source)
        if not await agent.store.set_config(new, revision, deadline()):
            return _error(409, "config was changed concurrently; read it again and retry")
        agent.wake()
        return web.json_response(new)

    @_guard
    async def patch_config(request: web.Request) -> web.Response:
        patch = await read_object(request)
        view = await agent.store.load(deadline())
        _if_match(request, view.config_revision)
        current = json.loads(view.config_raw) if view.config_raw else {}
        return await _store_config(request, merge_patch(current, patch), view.config_revision, "PATCH /config")

    @_guard
    async def put_config(request: web.Request) -> web.Response:
        new = await read_object(request)
        view = await agent.store.load(deadline())
        _if_match(request, view.config_revision)
        return await _store_config(request, new, view.config_revision, "PUT /config")

    @_guard
    async def switchover(request: web.Request) -> web.Response:
        body = await read_body(request, {"leader": (str,), "candidate": (str,), "scheduled_at": (str,)},
                               required=("leader",))
        at = parse_time(body["scheduled_at"], "scheduled_at") if body.get("scheduled_at") else None
        view = await agent.store.load(deadline())
        pg = agent.pg_state
        live = (LivePositions(pg.lsn, pg.replica_lsns)
                if view.leader == agent.name and pg.running and not pg.in_recovery else None)
        refusal = check_switchover(view, agent.config, body["leader"], body.get("candidate"), live)
        if refusal is not None:
            return _error(refusal.status, refusal.reason)
        req = FailoverRequest(body["leader"], body.get("candidate") or "", at)
        if not await agent.store.set_failover(req, 0, deadline()):
            return _error(409, "a switchover is already scheduled or in progress")
        if at is not None:
            return web.json_response({"message": f"switchover scheduled at {body['scheduled_at']}"}, status=202)
        old = body["leader"]
        return await complete(lambda leader: leader is not None and leader != old, "switchover",
                              lambda new: f"switched over from {old} to {new}")

    @_guard
    async def cancel_switchover(_: web.Request) -> web.Response:
        view = await agent.store.load(deadline())
        if view.failover is None or view.failover.scheduled_at is None:
            return _error(404, "no scheduled switchover")
        await agent.store.clear_failover(view.failover_revision, deadline())
        return web.json_response({"message": "scheduled switchover cancelled"})

    @_guard
    async def failover(request: web.Request) -> web.Response:
        body = await read_body(request, {"candidate": (str,), "leader": (str,)}, required=("candidate",))
        view = await agent.store.load(deadline())
        refusal = check_failover(view, agent.config, body["candidate"])
        if refusal is not None:
            return _error(refusal.status, refusal.reason)
        if not await agent.store.set_failover(FailoverRequest(body.get("leader") or "", body["candidate"]), 0, deadline()):
            return _error(409, "a switchover is already scheduled or in progress")
        return await complete(lambda leader: leader == body["candidate"], f"failover to {body['candidate']}",
                              lambda new: f"failed over to {new}")

    @_guard
    async def restart(request: web.Request) -> web.Response:
        body = await read_body(request, {"restart_pending": (bool,), "role": (str,), "schedule": (str,),
                                         "timeout": _NUMBER})
        role = body.get("role")
        if role is not None and role not in ("primary", "replica", "master"):
            raise BadRequest("role must be primary or replica")
        at = parse_time(body["schedule"], "schedule") if body.get("schedule") else None
        pg = agent.pg_state
        my_role = "primary" if pg.running and not pg.in_recovery else "replica"
        if role is not None and {"master": "primary"}.get(role, role) != my_role:
            return _error(412, f"restart conditions are not satisfied: this node is a {my_role}")
        if body.get("restart_pending") and not agent.pending_restart:
            return _error(412, "restart conditions are not satisfied: no pending restart")
        if not pg.running:
            return _error(503, "postgres is not running")
        if at is not None:
            agent.restart_at = at
            return web.json_response({"message": f"restart scheduled at {body['schedule']}"}, status=202)
        before = agent.counters["restarts"]
        agent.restart_at = 0.0
        agent.wake()
        end = time.monotonic() + float(body.get("timeout") or 120)
        while time.monotonic() < end:
            if agent.counters["restarts"] > before:
                return web.json_response({"message": "restarted successfully"})
            await asyncio.sleep(0.1)
        return _error(503, "restart did not complete in time")

    @_guard
    async def cancel_restart(_: web.Request) -> web.Response:
        if not agent.restart_at:
            return _error(404, "no scheduled restart")
        agent.restart_at = None
        return web.json_response({"message": "scheduled restart cancelled"})

    @_guard
    async def reload(request: web.Request) -> web.Response:
        await read_body(request, {})
        if not agent.pg_state.running:
            return _error(503, "postgres is not running")
        await agent.reload()
        return web.json_response({"message": "reloaded configuration"})

    @_guard
    async def reinitialize(request: web.Request) -> web.Response:
        body = await read_body(request, {"force": (bool,)})
        if agent.view.leader == agent.name:
            return _error(412, "cannot reinitialize the leader; switch over first")
        if agent.view.leader is None:
            return _error(503, "the cluster has no leader to clone from")
        if agent.busy and not body.get("force"):
            return _error(503, f"{agent.busy}; use force to reinitialize anyway")
        agent.reinit_requested = True
        agent.wake()
        return web.json_response({"message": "reinitialize started"})

    return [web.patch("/config", patch_config), web.put("/config", put_config),
            web.post("/switchover", switchover), web.delete("/switchover", cancel_switchover),
            web.post("/failover", failover), web.post("/restart", restart), web.delete("/restart", cancel_restart),
            web.post("/reload", reload), web.post("/reinitialize", reinitialize)]
