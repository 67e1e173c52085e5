"""A rolling restart that the cluster carries out, not the terminal that asked for it.

``pgha restart --rolling`` writes the ``rollout`` key; from then on the leader coordinates it,
one member at a time, writing each step back to the key with compare-and-set. A closed terminal
or a killed agent leaves a key that the next leader (or the restarted agent) picks up where it
was. The order, and why:

1. Replicas first, one at a time, and only while every other member is healthy (streaming,
   within ``max_lag``). Each is first *drained*: its ``/replica`` answers 503 and the HAProxy push
   sets it to drain, so new reads go elsewhere; its client sessions end, or ``drain`` seconds
   pass. It then restarts itself (the member does, on seeing its phase), and the next member
   waits until it streams again within ``max_lag``: no read capacity is lost twice.
   A synchronous standby is left out of the synchronous set while it drains (``core.sync``), so
   that commits never wait on a member being restarted, when another replica can take its place.
2. Then a switchover to the best replica, through the poolers' hand-over (``core.poolers``):
   the old primary's Postgres is stopped and started again as a replica by the hand-over itself,
   with the new parameters or binary, and counts as restarted once it streams.

A member that does not come back within ``member_timeout`` stops the rollout (state ``failed``,
with the reason): the cluster keeps serving on the others. ``abort`` stops the rollout after the
member in progress.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pgha.core.events import Event, phases

WAITING, DRAINING, RESTARTING, SWITCHING, DONE, SKIPPED = (
    "waiting", "draining", "restarting", "switching over", "done", "skipped")
RUNNING, FINISHED, ABORTED, FAILED = "running", "done", "aborted", "failed"


@dataclass(frozen=True)
class Rollout:
    """The ``rollout`` key. ``since`` is the epoch second the current phase began, on the
    coordinator's clock; ``revision`` its mod revision (for compare-and-set)."""

    members: tuple[str, ...]
    phases: Mapping[str, str] = field(default_factory=dict)
    pending_only: bool = False  # only members with a pending restart (parameters or binary)
    older_only: bool = False  # only members running an older binary than the one installed
    max_lag: int = 1 << 20
    drain: float = 10.0
    member_timeout: float = 120.0
    current: str = ""
    since: float = 0.0
    abort: bool = False
    state: str = RUNNING
    reason: str = ""
    started: float = 0.0
    marks: tuple[tuple[str, float], ...] = ()  # when each member's turn began (the event's phases)
    revision: int = 0

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def phase(self, name: str) -> str:
        return self.phases.get(name, WAITING)

    def draining(self, name: str) -> bool:
        """``name`` is taken out of the read path and the synchronous set for this rollout."""
        return self.running and self.current == name and self.phase(name) in (DRAINING, RESTARTING)

    def step(self, now: float, **changes: Any) -> Rollout:
        """This record with ``changes`` and, when a member's phase changes, ``since`` = now."""
        return replace(self, since=now if "phases" in changes else self.since, **changes)

    def set_phase(self, name: str, phase: str, now: float, current: str | None = None) -> Rollout:
        marks = (*self.marks, (name, now)) if phase in (DRAINING, SWITCHING) else self.marks
        return self.step(now, phases={**self.phases, name: phase}, current=name if current is None else current,
                         marks=marks)

    def event(self, node: str, now: float) -> Event:
        """The finished rollout on the failover timeline: one phase per member, from its turn."""
        reason = f"rolling restart {self.state}" + (f": {self.reason}" if self.reason else "")
        return Event("rollout", node, "", 0, 0, reason, phases(self.marks, now))

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "revision"}
        d["members"], d["phases"], d["marks"] = list(self.members), dict(self.phases), [list(m) for m in self.marks]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str, revision: int = 0) -> Rollout | None:
        try:
            d = json.loads(raw)
            members = tuple(str(m) for m in d.get("members") or ())
            phases = {str(k): str(v) for k, v in (d.get("phases") or {}).items()}
            return cls(members=members, phases=phases, pending_only=bool(d.get("pending_only")),
                       older_only=bool(d.get("older_only")), max_lag=int(d.get("max_lag", 1 << 20)),
                       drain=float(d.get("drain", 10.0)), member_timeout=float(d.get("member_timeout", 120.0)),
                       current=str(d.get("current") or ""), since=float(d.get("since") or 0.0),
                       abort=bool(d.get("abort")), state=str(d.get("state") or RUNNING),
                       reason=str(d.get("reason") or ""), started=float(d.get("started") or 0.0),
                       marks=tuple((str(n), float(t)) for n, t in d.get("marks") or ()), revision=revision)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return None

    def body(self) -> dict[str, Any]:
        """As ``/cluster`` and ``/rollout`` show it."""
        return {"state": self.state, "current": self.current or None, "members": list(self.members),
                "phases": {m: self.phase(m) for m in self.members}, "abort": self.abort, "reason": self.reason,
                "pending_only": self.pending_only, "older_only": self.older_only, "max_lag": self.max_lag,
                "drain": self.drain, "member_timeout": self.member_timeout, "started": self.started}

    def progress(self) -> str:
        """One line for ``pgha list``: ``running: n2 done, n3 draining, n1 waiting``."""
        parts = ", ".join(f"{m} {self.phase(m)}" for m in self.members)
        tail = f" ({self.reason})" if self.reason else ""
        return f"{self.state}{' (abort requested)' if self.abort and self.running else ''}: {parts}{tail}"


def older_binary(reason: Mapping[str, Any]) -> bool:
    """The pending restart includes a binary newer than the running server (a package update)."""
    return "server_version" in reason
