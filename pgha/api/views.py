"""Read-only views: node status, the cluster, timeline history, dynamic config."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from pgha.api.context import context
from pgha.core import availability, events, fitness, report, schedule
from pgha.core.cluster import ClusterView, lsn_text


def _member_row(view: ClusterView, name: str, top: int) -> dict[str, Any]:
    m = view.members[name]
    role = m.role
    if name == view.leader:
        standby = view.config is not None and view.config.standby_cluster is not None
        role = "standby_leader" if standby and m.role == "replica" else "leader"
    elif m.role == "replica" and view.sync is not None and name in view.sync.members:
        role = "sync_standby"
    row: dict[str, Any] = {"name": name, "role": role, "state": report.patroni_state(m.state), "host": m.host, "port": m.port,
                           # Patroni's members name their status URL; pgha's API answers there too
                           "api_url": m.api_url + "/patroni" if m.api_url else "", "timeline": m.timeline,
                           "tags": {k: v for k, v in m.tags.items() if v not in (None, False)}}
    if m.role == "replica" and name != view.leader:
        row.update(lag=fitness.lag(top, m.lsn), lsn=lsn_text(m.lsn),
                   receive_lag=fitness.lag(top, m.lsn), receive_lsn=lsn_text(m.lsn),
                   replay_lag=fitness.lag(top, m.replayed_lsn), replay_lsn=lsn_text(m.replayed_lsn))
    if m.following and name != view.leader:
        row["following"] = m.following  # whom it streams from (the leader, a cascading upstream)
    if row["state"] != m.state:
        row["activity"] = m.state
    if m.pending_restart:
        row.update(pending_restart=True, pending_restart_reason=dict(m.pending_restart_reason))
    if m.archive:
        row["archive"] = m.archive  # pgha's key: its WAL archiving fails or lags
    if m.stream_error:
        row["stream_error"] = m.stream_error  # pgha's key: why this standby does not stream
    if name == view.leader:
        row["writable"] = m.role == "primary"  # what clients see, not only who holds the key
        if m.role != "primary":
            row["note"] = m.note
    return row


def cluster_json(view: ClusterView, scope: str, paused: bool) -> dict[str, Any]:
    """The body of ``/cluster``, shaped as Patroni's."""
    top = fitness.cluster_top(view)
    out: dict[str, Any] = {"scope": scope, "members": [_member_row(view, n, top) for n in sorted(view.members)],
                           "pause": paused}
    if view.failover is not None:
        f = view.failover
        planned = {"at": schedule.iso(f.scheduled_at, "auto") if f.scheduled_at else None,
                   "from": f.leader or None, "to": f.candidate or None}
        out["scheduled_switchover"] = {k: v for k, v in planned.items() if v is not None}
    if view.poolers:  # not in Patroni's body: only when poolers follow the cluster
        out["poolers"] = {n: {"kind": p.kind, "state": p.state, "target": p.target or None}
                          for n, p in sorted(view.poolers.items())}
    if view.rollout is not None:  # not in Patroni's body either
        out["rollout"] = view.rollout.body()
    return out


async def status(request: web.Request) -> web.Response:
    return web.json_response(report.status(context(request).report(), time.monotonic(), time.time()))


async def cluster(request: web.Request) -> web.Response:
    r = context(request).report()
    return web.json_response(cluster_json(r.view, r.scope, r.config.pause))


async def history(request: web.Request) -> web.Response:
    """Patroni's rows; with ``?events=1`` the failover timeline (``core.events``), oldest first."""
    view = context(request).report().view
    if request.query.get("events") not in (None, "", "0", "false"):
        return web.json_response([ev.to_dict() for ev in events.parse(view.events_raw)])
    return web.json_response([[h.timeline, h.lsn, h.reason, h.time, h.leader] for h in view.history])


async def availability_view(request: web.Request) -> web.Response:
    """Uptime over the last day and the last 30 days (``pgha availability`` has the details)."""
    r = context(request).report()
    ledger = availability.Ledger.from_json(r.view.availability_raw) if r.view.availability_raw else None
    out: dict[str, Any] = {}
    for label, back in (("day", 86400), ("month", 30 * 86400)):
        if ledger is None:
            out[label] = None
            continue
        now = time.time()
        s = availability.summarize(ledger, now - back, now, r.config.heartbeat_interval)
        out[label] = {"observed_seconds": round(s.observed, 3), "down_seconds": round(s.down, 3),
                      "uptime_percent": round(100 * s.uptime, 6), "incidents": len(s.incidents)}
    return web.json_response(out)


async def config(request: web.Request) -> web.Response:
    ctx = context(request)
    r = ctx.report()
    body = json.loads(r.view.config_raw) if r.view.config_raw else ctx.local.bootstrap.dcs.model_dump(mode="json")
    # The ETag is the config's etcd revision: send it back in If-Match to PATCH/PUT safely.
    return web.json_response(body, headers={"ETag": f'"{r.view.config_revision}"'})


ROUTES = [web.get("/status", status), web.get("/patroni", status), web.get("/cluster", cluster),
          web.get("/history", history), web.get("/config", config), web.get("/availability", availability_view)]
