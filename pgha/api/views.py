"""Read-only views: node status, the cluster, timeline history, dynamic config."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from pgha.agent import Agent


def cluster_json(agent: Agent) -> dict[str, Any]:
    view = agent.view
    leader = view.members.get(view.leader or "")
    top = max(view.status.lsn, leader.lsn if leader else 0)
    members = []
    for name in sorted(view.members):
        m = view.members[name]
        row: dict[str, Any] = {"name": name, "role": "leader" if name == view.leader else m.role, "state": m.state,
                               "host": m.host, "port": m.port, "api_url": m.api_url, "timeline": m.timeline,
                               "tags": {k: v for k, v in m.tags.items() if v not in (None, False)}}
        if m.role == "replica" and name != view.leader:
            row["lag"] = max(0, top - m.lsn)
        members.append(row)
    out: dict[str, Any] = {"scope": agent.cfg.scope, "members": members, "pause": agent.config.pause}
    if view.failover is not None:
        f = view.failover
        out["scheduled_switchover"] = {
            "from": f.leader or None, "to": f.candidate or None,
            "at": datetime.fromtimestamp(f.scheduled_at, timezone.utc).isoformat() if f.scheduled_at else None}
    return out


def history_json(agent: Agent) -> list[list[Any]]:
    return [[h.timeline, h.lsn, h.reason, h.time, h.leader] for h in agent.view.history]


def config_json(agent: Agent) -> dict[str, Any]:
    raw = agent.view.config_raw
    if raw:
        loaded: dict[str, Any] = json.loads(raw)
        return loaded
    return agent.config.model_dump(mode="json")


def routes(agent: Agent) -> list[web.RouteDef]:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(agent.status())

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(cluster_json(agent))

    async def history(_: web.Request) -> web.Response:
        return web.json_response(history_json(agent))

    async def config(_: web.Request) -> web.Response:
        # The ETag is the config's etcd revision: send it back in If-Match to PATCH/PUT safely.
        return web.json_response(config_json(agent), headers={"ETag": f'"{agent.view.config_revision}"'})

    return [web.get("/status", status), web.get("/patroni", status), web.get("/cluster", cluster),
            web.get("/history", history), web.get("/config", config)]
