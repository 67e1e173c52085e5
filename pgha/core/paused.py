"""Maintenance mode (``pause``): no automatic change of any member's role, but the primary keeps
its route.

A paused cluster still loses its leader key when every lease expires (an etcd outage longer than
ttl). Postgres keeps running writable, as pause promises, and the node that runs it as the only
writable primary takes the key back, so that ``/primary`` and the load balancers find it again.
pgha never picks one of two writable primaries: an operator made them (a promotion by hand while
paused), and only an operator knows which one clients must reach. Before taking the key back a
node waits until every running agent has had a loop to publish its record again (all of them
expired with the leases), so that a second writable primary is seen before the key is taken."""

from __future__ import annotations

from pgha.core.actions import AcquireLeader, Action, Decision
from pgha.core.snapshot import Snapshot


def _wait(note: str) -> Decision:
    return Decision((), note)


def other_primaries(s: Snapshot) -> list[str]:
    """Other members whose records say they run as writable primaries."""
    return sorted(m.name for m in s.cluster.members.values() if m.name != s.name and m.role == "primary")


def decide(s: Snapshot, publish: Action) -> Decision:
    """The decision while paused (operator requests were served before). ``publish``: the
    leader's status publication, made by the caller."""
    c, pg = s.cluster, s.pg
    if not (pg.running and not pg.in_recovery):
        return _wait("paused: no automatic actions")
    others = other_primaries(s)
    if c.leader == s.name:
        extra = f"; {', '.join(others)} also running writable (holding no key: not routed)" if others else ""
        return Decision((publish,), f"paused: leader, no automatic actions{extra}")
    if c.leader is not None:
        return _wait(f"paused: running writable while {c.leader} holds the leader key (made by hand): "
                     f"no automatic actions")
    return _without_key(s, others)


def _without_key(s: Snapshot, others: list[str]) -> Decision:
    c, pg = s.cluster, s.pg
    if others:
        return _wait(f"paused, no leader key: {', '.join(others)} also "
                     f"{'runs' if len(others) == 1 else 'run'} as a writable primary; pgha will not pick one "
                     f"(demote all but one by hand, or resume)")
    if pg.timeline < c.status.timeline:
        return _wait(f"paused, no leader key: running on timeline {pg.timeline}, older than the last primary's "
                     f"{c.status.timeline}: not taking the key")
    if not s.holds_lease():
        return _wait("paused, no leader key: waiting for a lease to bind it to")
    waited = 0.0 if s.leader_lost_at is None else s.now - s.leader_lost_at
    if s.name not in c.members or waited < s.config.loop_wait:
        return _wait("paused, no leader key: waiting a loop for every member to publish its record")
    return Decision((AcquireLeader("paused: this node runs as the only writable primary"),),
                    "paused: taking the leader key back as the only writable primary")
