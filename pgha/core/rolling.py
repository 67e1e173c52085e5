"""The steps of a rolling restart (``core.rollout``): the leader's, which coordinates it, and
the member's, which restarts itself when its turn comes."""

from __future__ import annotations

from pgha.core import fitness
from pgha.core.actions import Action, Decision, NameSwitchoverCandidate, WriteRollout
from pgha.core.cluster import Member
from pgha.core.rollout import (ABORTED, DONE, DRAINING, FAILED, FINISHED, RESTARTING, SKIPPED, SWITCHING,
                               WAITING, Rollout, older_binary)
from pgha.core.snapshot import Snapshot


def _lag(s: Snapshot, m: Member) -> int:
    return s.pg.lsn - s.pg.replica_lsns.get(m.name, m.lsn)


def _back(s: Snapshot, r: Rollout, name: str) -> bool:
    """``name`` restarted during this phase and streams again within ``max_lag``."""
    m = s.cluster.members.get(name)
    return (m is not None and m.started_at >= r.since and m.role == "replica" and m.state == "streaming"
            and _lag(s, m) <= r.max_lag)


def _unhealthy(s: Snapshot, r: Rollout, but: str) -> list[str]:
    """The members other than ``but`` and the leader that are not streaming within ``max_lag``."""
    out = []
    for name in sorted(set(r.members) | set(s.cluster.members)):
        m = s.cluster.members.get(name)
        if name in (but, s.name):
            continue
        if m is None or m.role != "replica" or m.state != "streaming" or _lag(s, m) > r.max_lag:
            out.append(f"{name} ({'gone' if m is None else m.state})")
    return out


def _selected(r: Rollout, m: Member | None) -> bool:
    if m is None:
        return False
    if r.older_only:
        return m.pending_restart and older_binary(m.pending_restart_reason)
    return m.pending_restart or not r.pending_only


SETTLE = 2.0  # seconds between one member back and the next one's drain (or the switchover)
CHECK_EVERY = 1.0  # seconds between the coordinator's looks while a rollout runs (loop_wait may be 10)


def join(s: Snapshot, d: Decision, quiet: tuple[type, ...]) -> Decision:
    """``d`` with the coordinator's next step added, when this node is the writable leader with
    nothing else under way (no switchover, no ``quiet`` action such as a demotion)."""
    c = s.cluster
    if (s.busy is not None or not (s.is_leader() and s.pg.writable) or s.config.pause or c.failover is not None
            or c.handover is not None or any(isinstance(x, quiet) for x in d.actions)):
        return d
    step = coordinate(s)
    if step is None:
        return d
    acts, note = step
    recheck = min(d.recheck, CHECK_EVERY) if d.recheck is not None else CHECK_EVERY
    return Decision((*d.actions, *acts), note, recheck)


def coordinate(s: Snapshot) -> tuple[tuple[Action, ...], str] | None:
    """The leader's next step of a running rollout: actions to add to its decision, and a note."""
    r = s.cluster.rollout
    if r is None or not r.running:
        return None
    now, cur = s.wall_now, r.current
    if cur:
        return _in_progress(s, r, cur, now)
    if r.abort:
        return (WriteRollout(r.step(now, state=ABORTED, reason="aborted by an operator")),), "rolling restart aborted"
    remaining = [n for n in r.members if r.phase(n) == WAITING]
    if not remaining:
        return (WriteRollout(r.step(now, state=FINISHED)),), "rolling restart complete"
    if any(r.phase(n) == DONE for n in r.members) and now - r.since < SETTLE:
        # the member just back takes reads again (HAProxy's checks confirm it) before the next leaves
        return (), "rolling restart: letting the last member settle"
    nxt = next((n for n in remaining if n != s.name), remaining[0])
    m = s.cluster.members.get(nxt)
    if not _selected(r, m):
        return (WriteRollout(r.set_phase(nxt, SKIPPED, now, current="")),), f"rolling restart: {nxt} needs none"
    sick = _unhealthy(s, r, nxt)
    if sick:
        return (), f"rolling restart: waiting for {', '.join(sick)} before restarting {nxt}"
    if nxt != s.name:
        return (WriteRollout(r.set_phase(nxt, DRAINING, now)),), f"rolling restart: draining {nxt}"
    candidate = fitness.best_candidate(s.cluster, s.config, s.name, s.pg.lsn, s.pg.replica_lsns)
    if candidate is None:
        return (), f"rolling restart: no replica can take over from {s.name} yet"
    return ((WriteRollout(r.set_phase(nxt, SWITCHING, now)), NameSwitchoverCandidate(candidate)),
            f"rolling restart: switching over to {candidate} to restart {s.name}")


def _in_progress(s: Snapshot, r: Rollout, cur: str, now: float) -> tuple[tuple[Action, ...], str]:
    phase, m = r.phase(cur), s.cluster.members.get(cur)
    if phase == DRAINING:
        # Its sessions count once its record is newer than the drain (a loop of its own), and HAProxy
        # has had the push or its checks (a second) to stop routing new reads to it.
        settled = now - r.since >= min(r.drain, s.config.loop_wait + 1.0)
        drained = settled and m is not None and m.sessions == 0
        synchronous = cur in (s.cluster.sync.members if s.cluster.sync else ())
        if (drained and not synchronous) or now - r.since >= r.drain:
            # still synchronous after the whole drain: no other replica could take its place
            alone = " while still a synchronous standby: no other replica could take its place" if synchronous else ""
            return (WriteRollout(r.set_phase(cur, RESTARTING, now)),), f"rolling restart: restarting {cur}{alone}"
        why = "moving the synchronous role off it, " if synchronous else ""
        return (), f"rolling restart: draining {cur} ({why}{'?' if m is None else m.sessions} sessions left)"
    if phase == SWITCHING and cur == s.name:
        # still leading, no switchover under way (join runs only then): it was refused or given up
        candidate = fitness.best_candidate(s.cluster, s.config, s.name, s.pg.lsn, s.pg.replica_lsns)
        if now - r.since > r.member_timeout or candidate is None:
            why = f"the switchover away from {cur} did not happen ({'no healthy candidate' if candidate is None else 'timed out'})"
            return (WriteRollout(r.step(now, state=FAILED, reason=why)),), f"rolling restart stopped: {why}"
        return (NameSwitchoverCandidate(candidate),), f"rolling restart: asking again to switch over to {candidate}"
    if _back(s, r, cur):
        return (WriteRollout(r.set_phase(cur, DONE, now, current="")),), f"rolling restart: {cur} is back"
    if now - r.since > r.member_timeout:
        why = f"{cur} did not come back within {r.member_timeout:g} s ({'gone' if m is None else m.state})"
        return (WriteRollout(r.step(now, state=FAILED, reason=why)),), f"rolling restart stopped: {why}"
    return (), f"rolling restart: waiting for {cur} to stream again"


def restart_due(s: Snapshot) -> bool:
    """This member's turn to restart has come and it has not restarted since."""
    r = s.cluster.rollout
    return (r is not None and r.running and r.current == s.name and r.phase(s.name) == RESTARTING
            and s.pg.running and s.pg.in_recovery and (s.pg.started_at or 0.0) < r.since)
