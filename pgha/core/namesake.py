"""Two agents configured with one name (a copied node file, a replaced host started early): each
would take the other's leader key for its own earlier one and overwrite the other's member record,
so replicas would follow the wrong host. A member record bound to a lease this agent never held
(neither in this run nor, as remembered on disk, in the run before it) is another agent's.

The agent that finds it writes nothing under the name. Unless it leads, it waits: a dead earlier
run's lease expires within ``ttl``; one still alive after that is a live namesake, and this agent
stops. The one that leads keeps leading and rewrites its record: the newcomer stops."""

from __future__ import annotations

from urllib.parse import urlsplit

from pgha.core.cluster import ClusterView, Member
from pgha.core.snapshot import Snapshot


def address(m: Member) -> tuple[str, int]:
    """The Postgres a record describes (a Patroni record has only ``conn_url``)."""
    if m.port:
        return m.host, m.port
    u = urlsplit(m.conn_url)
    return u.hostname or "", u.port or 0


def bound_elsewhere(view: ClusterView, name: str, lease: int | None, own: frozenset[int] | None,
                    mine: tuple[str, int] | None = None) -> int | None:
    """The lease, never ours, that holds our member record (None: none, or one of ours). A record
    that describes our own Postgres (``mine``) was written by an earlier agent of this node: Patroni
    before a migration, or a run whose lease was not remembered. It is ours to take over."""
    if own is None or lease is None:
        return None
    bound = view.member_leases.get(name)
    if not bound or bound == lease or bound in own:
        return None
    m = view.members.get(name)
    return None if m is not None and mine is not None and address(m) == mine else bound


def may_publish(view: ClusterView, name: str, lease: int | None, own: frozenset[int] | None,
                mine: tuple[str, int] | None = None) -> bool:
    """Whether our member record may be written now: never over a namesake's, unless we lead."""
    return bound_elsewhere(view, name, lease, own, mine) is None or (view.leader == name and view.leader_lease == lease)


def foreign_lease(s: Snapshot) -> int | None:
    return bound_elsewhere(s.cluster, s.name, s.lease_id, s.own_leases, s.address)


def live_namesake(s: Snapshot) -> int | None:
    """A namesake's lease once it has outlived any earlier run of ours (None: not known yet)."""
    bound = foreign_lease(s)
    if bound is None or s.owns_key() or s.started_at is None:
        return None
    return bound if s.now - s.started_at > s.config.ttl + s.config.loop_wait else None
