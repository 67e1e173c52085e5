"""The Postgres parameters a node runs with: the dynamic config's, plus what synchronous mode
decides (pure)."""

from __future__ import annotations

from typing import Any

from pgha.core import archive, slots, sync
from pgha.core.settings import ClusterSettings


def wanted(config: ClusterSettings, chosen_sync: str | None) -> dict[str, Any]:
    # The archive section's first: postgresql.parameters may still override them one by one.
    params = {**archive.parameters(config), **config.postgresql.parameters}
    params.update(slots.parameters(config))
    if sync.mode(config) != "off":
        # Until the leader picks its standbys: strict mode waits for any ('*'), non-strict
        # mode runs asynchronously. A promoted standby starts from this too.
        fallback = "*" if config.synchronous_mode_strict else ""
        params["synchronous_standby_names"] = chosen_sync if chosen_sync is not None else fallback
    return params
