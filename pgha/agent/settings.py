"""The cluster's settings the agent runs under: the config stored in etcd, or, while the stored
config cannot be read, the last valid one it read (never a silent fall back to ``bootstrap.dcs``,
which could turn synchronous mode off or change the ttl on one node only).

The last valid config is also saved beside the data directory, so that an agent restarted while
the stored config is unreadable runs under it too, not under its ``bootstrap.dcs``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pgha import errors as e
from pgha.config.load import parse_stored_config
from pgha.config.model import DynamicConfig
from pgha.core.cluster import ClusterView
from pgha.core.settings import ClusterSettings
from pgha.postgres.runas import replace_file

log = logging.getLogger("pgha")


class StoredSettings:
    def __init__(self, bootstrap: ClusterSettings, saved: str | None = None) -> None:
        """``saved``: the file the last valid config is kept in (None: not kept)."""
        self.bootstrap = bootstrap
        self.last_valid: ClusterSettings | None = None  # read from etcd by this run of the agent
        self.problem = ""
        self.path = Path(saved) if saved is not None else None
        self.saved = self._load()  # what an earlier run read last, used only while etcd's is unreadable

    def follow(self, view: ClusterView) -> None:
        """Take in a view read from etcd; say once what is wrong with its config, if anything."""
        if view.config is not None:
            if view.config != self.last_valid:
                self._save(view.config)
            self.last_valid = view.config
        if view.config_problem != self.problem:
            self.problem = view.config_problem
            if not self.problem:
                log.info("the config in etcd is valid again")
            elif view.config is not None:
                log.warning("%s", self.problem)
            else:
                kept = ("the last valid settings" if self.last_valid is not None else
                        f"the last valid settings saved in {self.path}" if self.saved is not None else
                        "bootstrap.dcs (none read yet)")
                log.error("%s: running under %s until it is fixed (pgha edit-config)", self.problem, kept)

    def current(self, view: ClusterView) -> ClusterSettings:
        if view.config is not None:
            return view.config
        if self.last_valid is not None:
            return self.last_valid
        # A missing key (a new cluster, wiped keys) means bootstrap.dcs; only an unreadable one
        # means the settings the cluster ran under, as an earlier run of this agent saw them.
        return self.saved if view.config_problem and self.saved is not None else self.bootstrap

    def _load(self) -> ClusterSettings | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            return parse_stored_config(json.loads(self.path.read_text()), str(self.path))[0]
        except (OSError, ValueError, e.ConfigError) as exc:
            log.warning("ignoring the saved cluster config %s: %s", self.path, exc)
            return None

    def _save(self, config: ClusterSettings) -> None:
        if self.path is None or not isinstance(config, DynamicConfig):
            return
        try:  # private: restore_command or parameters may carry credentials
            replace_file(self.path, json.dumps(config.model_dump(mode="json"), sort_keys=True))
        except OSError as exc:
            log.warning("could not save the cluster config to %s: %s", self.path, exc)
