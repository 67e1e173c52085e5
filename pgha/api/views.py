"""Read-only views: node status, the cluster, timeline history, dynamic config."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from pgha.api.context import context
from pgha.core import fitness, report, schedule
from pgha.core.cluster import ClusterView


def cluster_json(view: ClusterView, scope: str, paused: bool) -> dict[str, Any]:
    top = fitness.cluster_top(view)
    members = []
    for name in sorted(view.members):
        m = view.members[name]
        row: dict[str, Any] = {"name": name, "role": "leader" if name == view.leader else m.role, "state": m.state,
                               "host": m.host, "port": m.port, "api_url": m.api_url, "timeline": m.timeline,
                               "tags": {k: v for k, v in m.tags.items() if v not in (None, False)}}
        if m.role == "replica" and name != view.leader:
            row["lag"] = fitness.lag(top, m.lsn)
        if name == view.leader:
            row["writable"] = m.role == "primary"  # what clients see, not only who holds the key
            if m.role != "primary":
                row["note"] = m.note
        members.append(row)
    out: dict[str, Any] = {"scope": scope, "members": members, "pause": paused}
    if view.failover is not None:
        f = view.failover
        out["scheduled_switchover"] = {
            "from": f.leader or None, "to": f.candidate or None,
            "at": schedule.iso(f.scheduled_at, "auto") if f.scheduled_at else None}
    return out


async def status(request: web.Request) -> web.Response:
    return web.json_response(report.status(context(request).report(), time.monotonic(), time.time()))


async def cluster(request: web.Request) -> web.Response:
    r = context(request).report()
    return web.json_response(cluster_json(r.view, r.scope, r.config.pause))


async def history(request: web.Request) -> web.Response:
    view = context(request).report().view
    return web.json_response([[h.timeline, h.lsn, h.reason, h.time, h.leader] for h in view.history])


async def config(request: web.Request) -> web.Response:
    ctx = context(request)
    r = ctx.report()
    body = json.loads(r.view.config_raw) if r.view.config_raw else ctx.local.bootstrap.dcs.model_dump(mode="json")
    # The ETag is the config's etcd revision: send it back in If-Match to PATCH/PUT safely.
    return web.json_response(body, headers={"ETag": f'"{r.view.config_revision}"'})


ROUTES = [web.get("/status", status), web.get("/patroni", status), web.get("/cluster", cluster),
          web.get("/history", history), web.get("/config", config)]
