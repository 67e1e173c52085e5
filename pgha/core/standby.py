"""A standby cluster (``standby_cluster`` in the dynamic config): its leader, the standby
leader, replicates from another cluster instead of taking writes; the other members follow it
as usual. It never promotes while the section is set; removing the section promotes it."""

from __future__ import annotations

from pgha.core.actions import Decision, Demote, FollowRemote, PublishLeaderStatus
from pgha.core.settings import ClusterSettings, StandbySource
from pgha.core.snapshot import Snapshot

# ``PgState.following`` (and the state file) while streaming from the other cluster: no member
# of this cluster has this name.
REMOTE = "(standby_cluster)"


def source(config: ClusterSettings) -> StandbySource | None:
    return config.standby_cluster


def active(config: ClusterSettings) -> bool:
    return config.standby_cluster is not None


def describe(src: StandbySource) -> str:
    where = f"{src.host}:{src.port}" if src.host else "its archive"
    return f"the standby_cluster source ({where})"


def as_standby_leader(s: Snapshot, publish: PublishLeaderStatus) -> Decision:
    """The leader of a standby cluster replicates from the other cluster and never promotes."""
    src = source(s.config)
    where = describe(src) if src is not None else "the standby_cluster source"
    if not s.pg.in_recovery:
        return Decision((Demote("fast", follow=REMOTE, reason="standby_cluster is set"),),
                        f"standby_cluster is set: demoting to a standby leader of {where}")
    if s.pg.following != REMOTE:
        return Decision((FollowRemote(),), f"standby leader: following {where}")
    return Decision((publish,), f"standby leader, following {where}")
