"""The one lease rule: when this node may count on its etcd lease, and when the last-resort guard
must stop a writable Postgres because the loop did not demote in time."""

from __future__ import annotations

from collections.abc import Sequence

from pgha.core import actions as a
from pgha.core.settings import ClusterSettings

# Actions after which Postgres takes writes.
_MAKES_WRITABLE = (a.Promote, a.ResumeAsPrimary, a.InitializeCluster)


def holds(valid_until: float | None, now: float, config: ClusterSettings) -> bool:
    """True while the lease is alive with ``retry_timeout`` to spare: the time a demotion may take
    before etcd could hand the leader key to another node."""
    return valid_until is not None and now < valid_until - config.retry_timeout


def keepalive_deadline(valid_until: float | None, now: float, config: ClusterSettings, leader: bool) -> float:
    """How long one renewal may take: never so long that a leader could not still demote in time."""
    deadline = config.retry_timeout
    if leader and valid_until is not None:
        deadline = min(deadline, valid_until - config.retry_timeout - now)
    return max(0.2, deadline)


def guard_due(valid_until: float | None, now: float, config: ClusterSettings, leader: bool, writable: bool) -> bool:
    """The loop should have demoted by now: half of the demotion margin is gone and Postgres still
    takes writes. Checked beside the loop, so a stuck loop cannot keep a writable primary."""
    return (leader and writable and valid_until is not None
            and now >= valid_until - config.retry_timeout / 2)


def fence_deadline(valid_until: float | None, now: float, config: ClusterSettings) -> float:
    """When the fence stops Postgres unless the lease is renewed: like the guard, half of the
    demotion margin before the lease could expire (at once when there is no lease)."""
    return now if valid_until is None else valid_until - config.retry_timeout / 2


def fence_wanted(writable: bool, paused: bool, actions: Sequence[a.Action]) -> bool:
    """The fence is armed while Postgres takes writes or is about to, except in maintenance mode
    (where pgha takes no automatic action at all)."""
    if paused:
        return False
    return writable or any(
        isinstance(x, _MAKES_WRITABLE) or (isinstance(x, (a.StartPostgres, a.RestartPostgres)) and x.primary)
        for x in actions)
