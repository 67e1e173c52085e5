"""The failover timeline: one event per role change, with its phases timed from their cause.

A failover's cause is the old leader's last lease renewal. Nobody sees it directly; the leader
key expires ``ttl`` after it, which every member sees, so it is taken as ``key gone - ttl``
(etcd expires a lease within about half a second of its due time). A switchover's cause is the
old leader releasing the key. The phases are consecutive, so they add up to the total:

- ``detection``: last renewal -> leader key gone (failovers only);
- ``election``: key gone -> this node holds the key;
- ``promotion``: key held -> Postgres promoted (pg_promote returned);
- ``first_write``: promoted -> the first write committed (the heartbeat row).

The old leader records its side as its own event: a demotion (``demote``), or a switchover's
hand-over (``checkpoint``, ``stop``, ``release``). A leader whose Postgres went down and that
started it again in place records a ``restart`` (``down``, ``start``); an old primary that
discards diverged WAL, a ``divergence`` (``agent.divergence``). Events are kept in etcd, the
last ``LIMIT``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

LIMIT = 100
FAILOVER_PHASES = ("detection", "election", "promotion", "first_write")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # pgha_failover_phase_seconds


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # epoch seconds
    seconds: float


@dataclass(frozen=True)
class Event:
    kind: str  # failover | switchover | handover | demotion | restart | divergence | rollout
    node: str  # the node that recorded it (the new primary, or the one that stepped down)
    previous: str  # the leader before it ("" when not known)
    timeline: int
    lsn: int
    reason: str
    phases: tuple[Phase, ...]
    detail: Mapping[str, Any] | None = None  # a divergence's report (``pgha divergence``)

    @property
    def start(self) -> float:
        return self.phases[0].start if self.phases else 0.0

    @property
    def total(self) -> float:
        return sum(p.seconds for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "previous": self.previous, "timeline": self.timeline,
                "lsn": self.lsn, "reason": self.reason, "start": iso(self.start), "total": round(self.total, 3),
                "phases": [{"name": p.name, "start": iso(p.start), "seconds": round(p.seconds, 3)}
                           for p in self.phases], **({"detail": dict(self.detail)} if self.detail else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        return cls(kind=str(d["kind"]), node=str(d["node"]), previous=str(d.get("previous") or ""),
                   timeline=int(d.get("timeline") or 0), lsn=int(d.get("lsn") or 0), reason=str(d.get("reason") or ""),
                   phases=tuple(Phase(str(p["name"]), epoch(str(p["start"])), float(p["seconds"]))
                                for p in d.get("phases") or ()),
                   detail=d["detail"] if isinstance(d.get("detail"), dict) else None)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def phases(marks: Sequence[tuple[str, float]], end: float) -> tuple[Phase, ...]:
    """Consecutive phases from ``(name, start)`` marks; the last ends at ``end``. An instant
    recorded out of order (clocks of two sources) never makes a phase negative."""
    out: list[Phase] = []
    for i, (name, start) in enumerate(marks):
        stop = marks[i + 1][1] if i + 1 < len(marks) else end
        out.append(Phase(name, start, max(0.0, stop - start)))
    return tuple(out)


def promotion(kind: str, node: str, previous: str, timeline: int, lsn: int, reason: str, ttl: float,
              lost: float, acquired: float, promoted: float, first_write: float) -> Event:
    """The new primary's event (epoch instants). ``kind`` failover: the key expired, the cause
    is ``lost - ttl``; switchover: the old leader released it at ``lost``."""
    marks = [("election", lost), ("promotion", acquired), ("first_write", promoted)]
    if kind == "failover":
        marks.insert(0, ("detection", lost - ttl))
    return Event(kind, node, previous, timeline, lsn, reason, phases(marks, first_write))


def append(events: Iterable[Event], new: Event, limit: int = LIMIT) -> list[Event]:
    return [*events, new][-limit:]


def to_json(events: Iterable[Event]) -> str:
    return json.dumps([e.to_dict() for e in events])


def parse(raw: str) -> tuple[Event, ...]:
    """The ``events`` key; an unreadable entry is skipped, an unreadable key is empty."""
    try:
        rows = json.loads(raw)
    except json.JSONDecodeError:
        return ()
    out = []
    for row in rows if isinstance(rows, list) else ():
        try:
            out.append(Event.from_dict(row))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(out)


def histogram(observations: Iterable[tuple[str, float]]) -> dict[str, tuple[list[int], float, int]]:
    """Per phase: cumulative bucket counts (``BUCKETS``), the sum and the count."""
    out: dict[str, tuple[list[int], float, int]] = {}
    for name, seconds in observations:
        counts, total, n = out.get(name, ([0] * len(BUCKETS), 0.0, 0))
        counts = [c + (1 if seconds <= b else 0) for c, b in zip(counts, BUCKETS)]
        out[name] = (counts, total + seconds, n + 1)
    return out
