"""Operator requests judged against the cluster view: pure functions returning a refusal (HTTP
status and reason) or None when the request may go ahead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgha.config.model import DynamicConfig
from pgha.core.cluster import ClusterView, Member
from pgha.core.sync import mode as sync_mode


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


@dataclass(frozen=True)
class LivePositions:
    """The leader's own view of WAL positions (its pg_stat_replication), fresher than member
    records, which can be a loop old under heavy writes. ``None`` for a caller that has none (the
    CLI): lag is then left to the leader to judge."""

    leader_lsn: int
    replicas: Mapping[str, int]


def candidate_problem(m: Member | None, name: str, view: ClusterView, config: DynamicConfig,
                      live: LivePositions | None = None) -> str | None:
    if m is None:
        return f"candidate {name} is not a member of the cluster"
    if name == view.leader:
        return f"candidate {name} is already the leader"
    if m.nofailover:
        return f"candidate {name} is tagged nofailover"
    if m.role != "replica" or m.state != "streaming":
        return f"candidate {name} is not a streaming replica (role {m.role}, state {m.state})"
    lag = live.leader_lsn - live.replicas.get(name, m.lsn) if live is not None else 0
    if lag > config.maximum_lag_on_failover:
        return f"candidate {name} lags {lag} bytes (maximum_lag_on_failover {config.maximum_lag_on_failover})"
    if sync_mode(config) != "off":
        key = view.sync
        if key is not None and key.members and name not in key.members:
            return f"candidate {name} is not a synchronous standby (synchronous standbys: {', '.join(key.members)})"
        if (key is None or not key.members) and config.synchronous_mode_strict:
            return "no synchronous standby is recorded (strict synchronous mode)"
    return None


def check_switchover(view: ClusterView, config: DynamicConfig, leader: str | None,
                     candidate: str | None, live: LivePositions | None = None) -> Refusal | None:
    if view.leader is None:
        return Refusal(412, "the cluster has no leader: use failover")
    if leader is not None and leader != view.leader:
        return Refusal(412, f"leader name does not match: the leader is {view.leader}, not {leader}")
    if view.failover is not None:
        return Refusal(409, "a switchover is already scheduled or in progress")
    if candidate:
        problem = candidate_problem(view.members.get(candidate), candidate, view, config, live)
        return Refusal(412, problem) if problem else None
    if not any(candidate_problem(m, n, view, config, live) is None for n, m in view.members.items()):
        return Refusal(412, "no healthy candidate: no streaming, promotable replica within maximum_lag_on_failover")
    return None


def check_failover(view: ClusterView, config: DynamicConfig, candidate: str) -> Refusal | None:
    if view.failover is not None:
        return Refusal(409, "a switchover is already scheduled or in progress")
    m = view.members.get(candidate)
    if m is None:
        return Refusal(412, f"candidate {candidate} is not a member of the cluster")
    if candidate == view.leader:
        return Refusal(412, f"candidate {candidate} is already the leader")
    if m.nofailover:
        return Refusal(412, f"candidate {candidate} is tagged nofailover")
    if m.role != "replica" or m.state not in ("running", "streaming"):
        return Refusal(412, f"candidate {candidate} is not a running replica (role {m.role}, state {m.state})")
    return None


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 merge: nested objects merge, ``null`` deletes a key."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out
