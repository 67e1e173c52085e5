"""What the agent remembers across its own restarts, stored beside (not inside: pg_rewind would
delete it) the data directory.

Written whole to a temporary file and renamed over the last copy, so that a full disk or a
crash mid-write leaves the last copy intact rather than an empty file; a write that failed is
tried again on the next change or look (``save``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("pgha")


@dataclass(frozen=True)
class DiskState:
    primary_on_timeline: int | None = None
    following: str | None = None
    handover_lsn: int | None = None
    lease: int | None = None  # this node's agent's last etcd lease (``core.namesake``)


class Memory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = self._load()
        self.unsaved = False  # the last write failed: the disk holds an older state

    def _load(self) -> DiskState:
        try:
            d = json.loads(self.path.read_text())
            return DiskState(**{k: d.get(k) for k in DiskState.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return DiskState()

    def remember(self, **changes: Any) -> None:
        new = replace(self.state, **changes)
        if new != self.state or self.unsaved:
            self.state = new
            self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.state)))
            tmp.replace(self.path)
        except OSError as exc:
            if not self.unsaved:
                log.error("cannot save what this node must remember (%s) in %s: kept in memory, tried again "
                          "on the next change", exc, self.path)
            self.unsaved = True
            return
        if self.unsaved:
            log.info("saved what this node must remember in %s again", self.path)
        self.unsaved = False
