"""Who streams from whom: cascading replication (the ``replicatefrom`` tag).

A replica tagged ``replicatefrom: <member>`` streams from that member while it is a streaming
replica itself, and from the leader otherwise (it comes back when the member does). Two replicas
naming each other both stream from the leader: neither would ever start streaming."""

from __future__ import annotations

from pgha.core.cluster import ClusterView


def upstream(view: ClusterView, me: str, replicatefrom: str | None, leader: str) -> str:
    """The member ``me`` should stream from, ``leader`` being the current leader."""
    if not replicatefrom or replicatefrom in (me, leader):
        return leader
    m = view.members.get(replicatefrom)
    if m is None or m.role != "replica" or m.state != "streaming" or m.tags.get("replicatefrom") == me:
        return leader
    return replicatefrom


def streams_from_leader(view: ClusterView, name: str, leader: str) -> bool:
    """Whether member ``name`` streams (or should) straight from ``leader``: it needs a slot there."""
    m = view.members.get(name)
    return m is None or upstream(view, name, m.tags.get("replicatefrom"), leader) == leader


def tree(view: ClusterView) -> list[tuple[str, int]]:
    """Members in tree order with their depth under the leader, by whom each reports it follows."""
    children: dict[str, list[str]] = {}
    for name in sorted(view.members):
        parent = view.members[name].following
        if name != view.leader and parent and parent in view.members and parent != name:
            children.setdefault(parent, []).append(name)
    out: list[tuple[str, int]] = []
    seen: set[str] = set()

    def walk(name: str, depth: int) -> None:
        if name in seen:
            return
        seen.add(name)
        out.append((name, depth))
        for child in children.get(name, []):
            walk(child, depth + 1)

    if view.leader in view.members:
        walk(view.leader or "", 0)
    for name in sorted(view.members):  # not under the leader: no upstream known, or a loop
        walk(name, 1 if view.leader else 0)
    return out
