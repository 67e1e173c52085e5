"""Which changes under the cluster's prefix wake an agent's loop at once (pure); any other change
waits for the next ``loop_wait``, so that the members' every-loop updates cost no loop."""

from __future__ import annotations

from pgha.core.cluster import ClusterView

# ``history`` (once per promotion) holds the new timeline's fork: a replica that received WAL past
# it learns at once that it must be rewound, not a loop_wait later (an extra 2.2 s to the first
# write in strict mode in one matrix run).
URGENT = frozenset({"leader", "config", "initialize", "failover", "history"})


def wakes(view: ClusterView, name: str, keys: set[str]) -> bool:
    """``keys``: the changed keys, relative to the prefix; ``view``: the loop's last view."""
    return bool(keys & URGENT) or member_appeared(view, name, keys)


def member_appeared(view: ClusterView, name: str, keys: set[str]) -> bool:
    """On the leader ``name``, a member key it has not seen (an old primary back after a cut, a
    new node): its slot is made at once, not a loop_wait later while that standby retries."""
    return view.leader == name and any(k.startswith("members/") and k[len("members/"):] not in view.members
                                       for k in keys)
