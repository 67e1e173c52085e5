"""What a node is busy with: a long job (clone, rewind, restart, ...) that runs beside the loop.

A value, not free text: the loop waits while one runs, health checks never call a busy node a
writable primary, and the member record shows ``Busy.state`` (the CLI reads it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Job(str, enum.Enum):
    BOOTSTRAPPING = "bootstrapping"
    CLONING = "cloning"
    STARTING = "starting"
    REWINDING = "rewinding"
    RESUMING = "resuming"
    RESTARTING = "restarting"
    REINITIALIZING = "reinitializing"
    DEMOTING = "demoting"
    STOPPING = "stopping"
    HANDING_OVER = "switchover"


@dataclass(frozen=True)
class Busy:
    job: Job
    detail: str = ""  # e.g. "from n1"; for a hand-over, the step under way

    @property
    def state(self) -> str:
        """The member record's ``state`` while the job runs."""
        if self.job is Job.HANDING_OVER:
            return f"switchover: {self.detail}" if self.detail else "switchover"
        return str(self.job.value)

    def __str__(self) -> str:
        return f"{self.job.value} {self.detail}".strip()
