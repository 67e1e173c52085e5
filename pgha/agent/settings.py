"""The cluster's settings the agent runs under: the config stored in etcd, or, while the stored
config cannot be read, the last valid one it read (never a silent fall back to ``bootstrap.dcs``,
which could turn synchronous mode off or change the ttl on one node only)."""

from __future__ import annotations

import logging

from pgha.core.cluster import ClusterView
from pgha.core.settings import ClusterSettings

log = logging.getLogger("pgha")


class StoredSettings:
    def __init__(self, bootstrap: ClusterSettings) -> None:
        self.bootstrap = bootstrap
        self.last_valid: ClusterSettings | None = None
        self.problem = ""

    def follow(self, view: ClusterView) -> None:
        """Take in a view read from etcd; say once what is wrong with its config, if anything."""
        if view.config is not None:
            self.last_valid = view.config
        if view.config_problem != self.problem:
            self.problem = view.config_problem
            if not self.problem:
                log.info("the config in etcd is valid again")
            elif view.config is not None:
                log.warning("%s", self.problem)
            else:
                kept = "the last valid settings" if self.last_valid is not None else "bootstrap.dcs (none read yet)"
                log.error("%s: running under %s until it is fixed (pgha edit-config)", self.problem, kept)

    def current(self, view: ClusterView) -> ClusterSettings:
        return view.config or self.last_valid or self.bootstrap
