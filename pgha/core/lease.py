"""The one lease rule: when this node may count on its etcd lease, and when the last-resort guard
must stop a writable Postgres because the loop did not demote in time.

A node counts on its lease until the earlier of two instants: ``retry_timeout`` before the lease
could expire (time to demote before etcd can hand the key to anyone else), and ``retry_timeout``
after a renewal was due and did not come (``renewed_at + loop_wait + retry_timeout``). The second
bound makes a primary cut off from etcd stop taking writes after failing to renew for
``retry_timeout``, not only shortly before its lease runs out: every write it would accept after
that is a write a failover may throw away."""

from __future__ import annotations

from collections.abc import Sequence

from pgha.core import actions as a
from pgha.core.settings import ClusterSettings

# Actions after which Postgres takes writes.
_MAKES_WRITABLE = (a.Promote, a.ResumeAsPrimary, a.InitializeCluster)


def held_until(valid_until: float | None, renewed_at: float | None, config: ClusterSettings) -> float | None:
    """Until when this node may count on its lease (None: it has none). ``renewed_at`` is when the
    last successful renewal was sent (None: not known, only the expiry bound applies)."""
    if valid_until is None:
        return None
    until = valid_until - config.retry_timeout
    if renewed_at is not None:
        until = min(until, renewed_at + config.loop_wait + config.retry_timeout)
    return until


def holds(valid_until: float | None, now: float, config: ClusterSettings, renewed_at: float | None = None) -> bool:
    """True while this node may count on its lease (see the module docstring)."""
    until = held_until(valid_until, renewed_at, config)
    return until is not None and now < until


def keepalive_deadline(valid_until: float | None, now: float, config: ClusterSettings, leader: bool,
                       renewed_at: float | None = None) -> float:
    """How long one renewal may take: never so long that a leader could not still demote in time."""
    deadline = config.retry_timeout
    until = held_until(valid_until, renewed_at, config)
    if leader and until is not None:
        deadline = min(deadline, until - now)
    return max(0.2, deadline)


def retry_pause(config: ClusterSettings, ok: bool) -> float:
    """Time to the next renewal: ``loop_wait``, or soon after a failure, so that a short etcd
    election is ridden through within ``retry_timeout``."""
    return float(config.loop_wait) if ok else min(float(config.loop_wait), 0.5)


def guard_due(valid_until: float | None, now: float, config: ClusterSettings, leader: bool, writable: bool,
              paused: bool = False) -> bool:
    """The loop should have demoted by now: half of the demotion margin is gone and Postgres still
    takes writes. Checked beside the loop, so a stuck loop cannot keep a writable primary. Never in
    maintenance mode, where pgha takes no automatic action."""
    return (leader and writable and not paused and valid_until is not None
            and now >= valid_until - config.retry_timeout / 2)


def guard_pause(valid_until: float | None, now: float, config: ClusterSettings, tick: float, idle: float) -> float:
    """How long the guard may sleep: until ``guard_due`` could first hold (at least ``tick``),
    and never more than ``idle``, which bounds how late it notices the instant move earlier
    (a ttl change's retiring lease, a longer retry_timeout)."""
    if valid_until is None:
        return idle
    return min(idle, max(tick, valid_until - config.retry_timeout / 2 - now))


def fence_deadline(valid_until: float | None, now: float, config: ClusterSettings) -> float:
    """When the fence stops Postgres unless the lease is renewed: like the guard, half of the
    demotion margin before the lease could expire (at once when there is no lease)."""
    return now if valid_until is None else valid_until - config.retry_timeout / 2


def fence_wanted(writable: bool, paused: bool, actions: Sequence[a.Action], busy: bool = False,
                 armed: bool = False) -> bool:
    """The fence is armed while Postgres takes writes or is about to, except in maintenance mode
    (where pgha takes no automatic action at all). An armed fence stays armed while a job runs:
    the job that bootstraps, restarts or resumes a primary makes Postgres writable between two
    looks, and an agent killed right then must not leave it writable with nothing to stop it."""
    if paused:
        return False
    return writable or (busy and armed) or any(
        isinstance(x, _MAKES_WRITABLE) or (isinstance(x, (a.StartPostgres, a.RestartPostgres)) and x.primary)
        for x in actions)


def observe_timeout(config: ClusterSettings) -> float:
    """How long one look at the local Postgres may take: a slow query must not push a demotion
    past the lease (half the demotion margin, at most 5 s)."""
    return max(0.5, min(5.0, config.retry_timeout / 2))
