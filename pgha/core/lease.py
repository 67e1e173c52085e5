"""The one lease rule: when this node may count on its etcd lease, and when the last-resort guard
must stop a writable Postgres because the loop did not demote in time."""

from __future__ import annotations

from pgha.core.settings import ClusterSettings


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
