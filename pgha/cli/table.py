"""The member table of ``pgha list`` / ``topology`` in pretty, json, yaml and tsv forms (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from pgha.core import fitness, schedule, sync
from pgha.core.cluster import ClusterView
from pgha.core.topology import tree

BASE_COLUMNS = ["Member", "Host", "Role", "State", "TL", "Lag in MB"]


def _mb(n: int) -> str:
    return str(round(n / 1048576, 1)) if n else "0"


def rows(view: ClusterView, topology: bool = False) -> list[dict[str, Any]]:
    top = fitness.cluster_top(view)
    # topology: each replica under the member it streams from (cascading replicas one level deeper)
    order = tree(view) if topology else [(n, 0) for n in sorted(view.members)]
    out = []
    for name, depth in order:
        m = view.members[name]
        is_leader = name == view.leader
        sync_members = view.sync.members if view.sync is not None and view.sync.leader == view.leader else ()
        standby = view.config is not None and view.config.standby_cluster is not None
        role = (("Leader" if m.role == "primary" else "Standby Leader" if standby else "Leader (read-only)") if is_leader
                else "Sync Standby" if name in sync_members
                else "Replica" if m.role == "replica" else m.role.capitalize())
        tags = {k: v for k, v in m.tags.items() if v not in (None, False) and not (k == "failover_priority" and v == 1)}
        shown = "  " * (depth - 1) + f"+ {name}" if topology and depth > 0 else name
        out.append({"Member": shown, "Host": f"{m.host}:{m.port}", "Role": role, "State": m.state,
                    "TL": m.timeline, "Lag in MB": "" if is_leader or m.role != "replica" else _mb(fitness.lag(top, m.lsn)),
                    "Pending restart": "*" if m.pending_restart else "",
                    "Pending restart reason": restart_reason(m.pending_restart_reason),
                    "Scheduled restart": m.scheduled_restart, "Archive": m.archive,
                    "Tags": ", ".join(f"{k}: {v}" for k, v in sorted(tags.items()))})
    return out


def restart_reason(reason: Mapping[str, Any]) -> str:
    """Patroni's form: ``wal_level: replica->logical``, the parameters comma-separated."""
    return ", ".join(f"{k}: {(v or {}).get('old_value')}->{(v or {}).get('new_value')}" for k, v in sorted(reason.items()))


def columns(data: list[dict[str, Any]]) -> list[str]:
    extra = [c for c in ("Pending restart", "Pending restart reason", "Scheduled restart", "Archive", "Tags")
             if any(r[c] for r in data)]
    return BASE_COLUMNS + extra


def footer(view: ClusterView, paused: bool) -> list[str]:
    lines = []
    if paused:
        lines.append(" Maintenance mode: on")
    if view.leader is None and view.members:
        notes = sorted({m.note for m in view.members.values() if m.note})
        lines += [f" No leader: {n}" for n in notes]
    leader = view.members.get(view.leader or "")
    if leader is not None and leader.role != "primary":
        lines.append(f" Leader {leader.name} does not accept writes: {leader.note or leader.state}")
    elif leader is not None and leader.note.startswith("leader; "):  # a state the leader waits out
        lines.append(f" Leader {leader.name}: {leader.note.removeprefix('leader; ')}")
    lines += [f" {n} does not stream: {m.stream_error}" for n, m in sorted(view.members.items()) if m.stream_error]
    impossible = sync.failover_impossible(view)
    if impossible:
        lines.append(f" Warning: {impossible}")
    f = view.failover
    if f is not None:
        when = schedule.iso(f.scheduled_at, "auto") if f.scheduled_at else "now"
        lines.append(f" Switchover scheduled at: {when}")
        lines.append(f"                    from: {f.leader or view.leader}")
        if f.candidate:
            lines.append(f"                      to: {f.candidate}")
    r = view.rollout
    if r is not None and r.state != "done":  # a failed or aborted one stays shown until the next
        lines.append(f" Rolling restart {r.progress()}")
    return lines


def render(view: ClusterView, scope: str, fmt: str, topology: bool = False) -> str:
    data = rows(view, topology)
    cols = columns(data)
    paused = bool(view.config and view.config.pause)
    if fmt == "json":
        return json.dumps([{c: r[c] for c in cols} for r in data])
    if fmt == "yaml":
        return yaml.safe_dump([{c: r[c] for c in cols} for r in data], sort_keys=False).rstrip()
    if fmt == "tsv":
        return "\n".join(["\t".join(cols)] + ["\t".join(str(r[c]) for c in cols) for r in data])
    widths = {c: max([len(c)] + [len(str(r[c])) for r in data]) for c in cols}
    sep = "+" + "+".join("-" * (widths[c] + 2) for c in cols) + "+"
    title = f"+ Cluster: {scope} "
    lines = [title + "-" * max(0, len(sep) - len(title) - 1) + "+",
             "| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |", sep]
    lines += ["| " + " | ".join(str(r[c]).ljust(widths[c]) for c in cols) + " |" for r in data]
    lines.append(sep)
    return "\n".join(lines + footer(view, paused))
