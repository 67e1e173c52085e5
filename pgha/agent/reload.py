"""SIGHUP (``systemctl reload``): read the node's config file again and apply what can change
while the agent runs. Tags and logging apply at once; any other change is named in the log as
waiting for an agent restart (addresses, data directory and credentials are held by open sockets,
a running Postgres and the lease), and a file that no longer validates changes nothing."""

from __future__ import annotations

import logging
from typing import Any

from pgha import errors as e
from pgha import log as logsetup
from pgha.config import load_local_config
from pgha.config.model import LocalConfig

log = logging.getLogger("pgha.agent")

LIVE = ("tags", "log")  # the sections a reload applies


def changed_sections(old: LocalConfig, new: LocalConfig) -> list[str]:
    a: dict[str, Any] = old.model_dump()
    b: dict[str, Any] = new.model_dump()
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def reread(path: str, running: LocalConfig) -> LocalConfig | None:
    """The running config with the file's live sections, or None when nothing applies."""
    try:
        new = load_local_config(path)
    except e.ConfigError as exc:
        log.error("config reload failed, the running config stays: %s", exc)
        return None
    changed = changed_sections(running, new)
    later = [k for k in changed if k not in LIVE]
    if later:
        log.warning("config reload: %s changed in %s and takes an agent restart", ", ".join(later), path)
    now = [k for k in changed if k in LIVE]
    if not now:
        log.info("config reload: nothing to apply now from %s", path)
        return None
    merged = running.model_copy(update={k: getattr(new, k) for k in now})
    if "log" in now:
        lc = merged.log
        logsetup.setup(merged.scope, merged.name, lc.level, lc.format, lc.dir, lc.file_size, lc.file_num)
    log.info("config reload: applied %s from %s", ", ".join(now), path)
    return merged
