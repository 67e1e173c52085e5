"""Who is fit to lead: lag, rank and the candidate checks, in one place for ``decide``, the
operator request checks, the views and the CLI table.

Positions: a member record's ``lsn`` is a replica's received position (a primary's current one)
and ``replayed_lsn`` what it has applied; the leader's live pg_stat_replication write positions
are fresher than records, which can be a loop old under heavy writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pgha.core import sync
from pgha.core.cluster import ClusterView, Member
from pgha.core.settings import ClusterSettings

Rank = tuple[int, int, tuple[int, ...]]


@dataclass(frozen=True)
class LivePositions:
    """The leader's own view of WAL positions (its pg_stat_replication). ``None`` where a caller
    has none (the CLI): lag is then left to the leader to judge."""

    leader_lsn: int
    replicas: Mapping[str, int]


def lag(top: int, position: int) -> int:
    """Bytes ``position`` is behind ``top`` (never negative)."""
    return max(0, top - position)


def cluster_top(view: ClusterView) -> int:
    """The furthest WAL position the cluster knows of: the leader's record or the ``status`` key."""
    leader = view.members.get(view.leader or "")
    return max(view.status.lsn, leader.lsn if leader else 0)


def rank(lsn: int, priority: int, name: str) -> Rank:
    """Higher WAL position wins, then higher failover_priority, then the smaller name."""
    return (lsn, priority, tuple(-ord(ch) for ch in name))


def failover_position(received: int, replayed: int, config: ClusterSettings) -> int:
    """The position a failover judges a standby by. In synchronous modes the received (flushed)
    one: a standby that has flushed a commit but not yet replayed it acknowledged it, and it
    replays everything before it opens for writes. Otherwise the replayed one."""
    return received if sync.mode(config) != "off" else replayed


def peer_eligible(m: Member, view: ClusterView, config: ClusterSettings) -> bool:
    """A peer that may win the race for a free leader key (judged from its record)."""
    position = failover_position(m.lsn, m.replayed_lsn, config)
    return (m.role == "replica" and m.state in ("running", "streaming") and not m.nofailover
            and view.status.lsn - position <= config.maximum_lag_on_failover)


def sync_ok(view: ClusterView, config: ClusterSettings, name: str) -> bool:
    """In synchronous mode only a listed synchronous standby may take over."""
    key = view.sync
    if sync.mode(config) == "off" or key is None or not key.members:
        return not (sync.mode(config) != "off" and config.synchronous_mode_strict)
    return name in key.members


def switchover_ready(m: Member, config: ClusterSettings, leader_lsn: int, live: Mapping[str, int]) -> bool:
    """Fit to take over in a planned switchover: streaming, promotable, not lagging (by the
    leader's live positions where it has them)."""
    return (m.role == "replica" and m.state == "streaming" and not m.nofailover
            and leader_lsn - live.get(m.name, m.lsn) <= config.maximum_lag_on_failover)


def best_candidate(view: ClusterView, config: ClusterSettings, me: str, leader_lsn: int,
                   live: Mapping[str, int]) -> str | None:
    fit = [m for m in view.members.values()
           if m.name != me and switchover_ready(m, config, leader_lsn, live) and sync_ok(view, config, m.name)]
    if not fit:
        return None
    return max(fit, key=lambda m: rank(live.get(m.name, m.lsn), m.priority, m.name)).name


def candidate_problem(view: ClusterView, config: ClusterSettings, name: str,
                      live: LivePositions | None = None) -> str | None:
    """Why ``name`` cannot be a switchover candidate, or None."""
    m = view.members.get(name)
    if m is None:
        return f"candidate {name} is not a member of the cluster"
    if name == view.leader:
        return f"candidate {name} is already the leader"
    if m.nofailover:
        return f"candidate {name} is tagged nofailover"
    if m.role != "replica" or m.state != "streaming":
        return f"candidate {name} is not a streaming replica (role {m.role}, state {m.state})"
    behind = live.leader_lsn - live.replicas.get(name, m.lsn) if live is not None else 0
    if behind > config.maximum_lag_on_failover:
        return f"candidate {name} lags {behind} bytes (maximum_lag_on_failover {config.maximum_lag_on_failover})"
    if sync.mode(config) != "off":
        key = view.sync
        if key is not None and key.members and name not in key.members:
            return f"candidate {name} is not a synchronous standby (synchronous standbys: {', '.join(key.members)})"
        if (key is None or not key.members) and config.synchronous_mode_strict:
            return "no synchronous standby is recorded (strict synchronous mode)"
    return None
