"""Operator requests judged against the cluster view: pure functions returning a refusal (HTTP
status and reason) or None when the request may go ahead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgha.core import backup
from pgha.core.cluster import ClusterView, Member
from pgha.core.fitness import LivePositions, candidate_problem
from pgha.core.settings import ClusterSettings

__all__ = ["LivePositions", "Refusal", "backup_member", "check_backup", "check_failover", "check_rollout", "check_switchover", "merge_patch"]


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def check_switchover(view: ClusterView, config: ClusterSettings, leader: str | None,
                     candidate: str | None, live: LivePositions | None = None) -> Refusal | None:
    if view.leader is None:
        return Refusal(412, "the cluster has no leader: use failover")
    if leader is not None and leader != view.leader:
        return Refusal(412, f"leader name does not match: the leader is {view.leader}, not {leader}")
    if view.failover is not None:
        return Refusal(409, "a switchover is already scheduled or in progress")
    if candidate:
        problem = candidate_problem(view, config, candidate, live)
        return Refusal(412, problem) if problem else None
    if not any(candidate_problem(view, config, n, live) is None for n in view.members):
        return Refusal(412, "no healthy candidate: no streaming, promotable replica within maximum_lag_on_failover")
    return None


def check_failover(view: ClusterView, config: ClusterSettings, candidate: str) -> Refusal | None:
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


def check_rollout(view: ClusterView, config: ClusterSettings, members: list[str], max_lag: int,
                  live: LivePositions | None) -> Refusal | None:
    """A rolling restart of ``members`` (the leader among them: it switches over first)."""
    if config.pause:
        return Refusal(412, "the cluster is paused (maintenance mode): resume it first")
    if view.leader is None:
        return Refusal(412, "the cluster has no leader")
    if view.failover is not None:
        return Refusal(409, "a switchover is scheduled or in progress")
    if view.rollout is not None and view.rollout.running:
        return Refusal(409, f"a rolling restart is already running ({view.rollout.progress()})")
    unknown = [n for n in members if n not in view.members]
    if unknown:
        return Refusal(412, f"not a member of the cluster: {', '.join(unknown)}")
    leader_lsn = live.leader_lsn if live is not None else view.members[view.leader].lsn \
        if view.leader in view.members else 0
    for name, m in sorted(view.members.items()):
        behind = leader_lsn - (live.replicas.get(name, m.lsn) if live is not None else m.lsn)
        # its record outlives it by up to a ttl; the leader's own replication view does not
        gone = live is not None and m.following == view.leader and name not in live.replicas
        if name != view.leader and (m.role != "replica" or m.state != "streaming" or behind > max_lag or gone):
            why = f"not streaming from {view.leader}" if gone else f"{m.role}, {m.state}, {max(0, behind)} bytes behind"
            return Refusal(412, f"member {name} is unhealthy ({why}):"
                                " a rolling restart restarts nobody while another member is unhealthy")
    if view.leader in members and not any(candidate_problem(view, config, n, live) is None for n in view.members):
        return Refusal(412, f"no replica can take over from {view.leader}: a rolling restart switches over first")
    return None


def _backs_up(m: Member, view: ClusterView) -> bool:
    return (m.name != view.leader and m.role == "replica" and m.state == "streaming"
            and not m.tags.get("nobackup"))


def backup_member(view: ClusterView, source: str) -> str | Refusal:
    """The member a backup runs on: ``replica`` (the most caught-up healthy replica),
    ``primary`` (the leader), or a member's name."""
    if view.leader is None:
        return Refusal(412, "the cluster has no leader: a backup needs a running primary")
    if source == "primary":
        return view.leader
    if source == "replica":
        ready = sorted((m for m in view.members.values() if _backs_up(m, view)), key=lambda m: (-m.lsn, m.name))
        if not ready:
            return Refusal(412, "no streaming replica to back up from (use --from primary)")
        return ready[0].name
    m = view.members.get(source)
    if m is None:
        return Refusal(412, f"{source} is not a member of the cluster")
    if m.name != view.leader and not _backs_up(m, view):
        return Refusal(412, f"{source} is not a streaming replica (role {m.role}, state {m.state})")
    return m.name


def check_backup(view: ClusterView, config: ClusterSettings, kind: str) -> Refusal | None:
    a = config.archive
    if a is None or not a.pgbackrest_stanza:
        return Refusal(412, "backups need the archive section with pgbackrest: {stanza: ...}")
    if kind not in backup.TYPES:
        return Refusal(400, f"type must be one of {', '.join(backup.TYPES)}, not {kind!r}")
    if view.backup is not None and view.backup.running:
        return Refusal(409, f"a backup is already running: {view.backup.progress()}")
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
