"""A standby cluster (``standby_cluster`` in the dynamic config): its leader, the standby
leader, replicates from another cluster instead of taking writes; the other members follow it
as usual. It never promotes while the section is set; removing the section promotes it."""

from __future__ import annotations

from pgha.core.settings import ClusterSettings, StandbySource

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
