"""Write availability as clients see it, from the leader's heartbeat: one row committed every
``heartbeat_interval`` seconds (``pgha.heartbeat``). Time between two committed heartbeats beyond
the interval (and a small tolerance) is downtime: the cluster took no write then. A heartbeat
that waits for a synchronous standby counts as down while it waits, as a client's commit would.

The ledger keeps seconds observed and seconds down per hour (31 days) and per day (400 days),
and the last ``INCIDENTS`` gaps. A new leader continues the series from the last heartbeat it
finds in the table, written by its predecessor. Pure: the agent commits and stores, this counts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

HOURS, DAYS, INCIDENTS = 31 * 24, 400, 100
TOLERANCE = 0.5  # seconds of lateness that are not downtime (a slow fsync, the loop's own jitter)
FLUSH = 30.0  # the leader stores the ledger this often (and at once after a gap); an etcd write each time


@dataclass(frozen=True)
class Incident:
    start: float  # epoch: the last heartbeat before the gap
    end: float  # epoch: the first heartbeat after it

    @property
    def down(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Ledger:
    hours: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # "2026-11-28T02": (observed, down)
    days: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # "2026-11-28": (observed, down)
    incidents: tuple[Incident, ...] = ()
    last: float = 0.0  # epoch: the last committed heartbeat counted

    def to_json(self) -> str:
        return json.dumps({"hours": {k: list(v) for k, v in self.hours.items()},
                           "days": {k: list(v) for k, v in self.days.items()},
                           "incidents": [[i.start, i.end] for i in self.incidents], "last": self.last})

    @classmethod
    def from_json(cls, raw: str) -> Ledger:
        try:
            d = json.loads(raw)
            return cls(hours={str(k): (float(v[0]), float(v[1])) for k, v in d.get("hours", {}).items()},
                       days={str(k): (float(v[0]), float(v[1])) for k, v in d.get("days", {}).items()},
                       incidents=tuple(Incident(float(a), float(b)) for a, b in d.get("incidents", [])),
                       last=float(d.get("last") or 0.0))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError, IndexError):
            return cls()


def _key(t: float, unit: str) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H" if unit == "hour" else "%Y-%m-%d")


def _spread(buckets: Mapping[str, tuple[float, float]], start: float, end: float, down: bool, unit: str,
            keep: int) -> dict[str, tuple[float, float]]:
    """Add [start, end) to the buckets it overlaps: observed, and down too when ``down``."""
    out, step = dict(buckets), 3600 if unit == "hour" else 86400
    t = start
    while t < end:
        edge = min(end, (math.floor(t / step) + 1) * step)
        observed, lost = out.get(_key(t, unit), (0.0, 0.0))
        out[_key(t, unit)] = (observed + edge - t, lost + (edge - t if down else 0.0))
        t = edge
    return dict(sorted(out.items())[-keep:])


def beat(ledger: Ledger, committed: float, previous: float | None, interval: float) -> Ledger:
    """Count a heartbeat committed at ``committed`` (epoch); ``previous`` is the last heartbeat
    committed before it (read from the table on a new leader; None: the series starts here)."""
    since = previous if previous is not None else ledger.last
    if not since or committed <= since:
        return replace(ledger, last=max(committed, ledger.last))
    late = committed - since > interval + TOLERANCE
    up_to = since + interval if late else committed  # the first interval of a gap was up
    hours = _spread(ledger.hours, since, up_to, False, "hour", HOURS)
    days = _spread(ledger.days, since, up_to, False, "day", DAYS)
    incidents = ledger.incidents
    if late:
        hours = _spread(hours, up_to, committed, True, "hour", HOURS)
        days = _spread(days, up_to, committed, True, "day", DAYS)
        incidents = (*incidents, Incident(up_to, committed))[-INCIDENTS:]
    return Ledger(hours, days, incidents, committed)


def rebase(ledger: Ledger, committed: float, elapsed: float | None) -> tuple[Ledger, float]:
    """Our own heartbeats follow each other by ``elapsed`` seconds of the monotonic clock; when
    the wall clock moved otherwise (stepped: NTP, an operator), the step is no write gap, forward
    or backward: ``last`` moves with it. Returns the ledger and the step (0.0: none)."""
    if elapsed is None or not ledger.last:
        return ledger, 0.0
    step = committed - ledger.last - elapsed
    if abs(step) <= TOLERANCE:
        return ledger, 0.0
    return replace(ledger, last=committed - elapsed), step


@dataclass(frozen=True)
class Summary:
    since: float
    until: float
    observed: float
    down: float
    incidents: tuple[Incident, ...]

    @property
    def uptime(self) -> float:
        return 1.0 - self.down / self.observed if self.observed > 0 else 1.0

    @property
    def nines(self) -> float:
        return math.inf if self.down <= 0 else -math.log10(max(1e-12, 1.0 - self.uptime))


def summarize(ledger: Ledger, since: float, now: float, interval: float) -> Summary:
    """Over [since, now]: hourly buckets (daily ones beyond what the hours keep). A gap still open
    counts as down up to now, once the stored ledger is older than the leader's flush period (a
    live leader stores it every ``FLUSH`` seconds, so an older ``last`` means no heartbeat)."""
    unit_hours = since >= now - HOURS * 3600
    buckets, unit = (ledger.hours, "hour") if unit_hours else (ledger.days, "day")
    first = _key(since, unit)
    observed = sum(v[0] for k, v in buckets.items() if k >= first)
    down = sum(v[1] for k, v in buckets.items() if k >= first)
    incidents = tuple(i for i in ledger.incidents if i.end >= since)
    if ledger.last and now - ledger.last > FLUSH + interval + TOLERANCE:
        observed += now - ledger.last - interval
        down += now - ledger.last - interval
        incidents = (*incidents, Incident(ledger.last + interval, now))
    return Summary(since, now, observed, down, incidents)


def budget(slo_percent: float, seconds: float) -> float:
    """Downtime an SLO allows over ``seconds`` (99.99 over a year: 52.6 min)."""
    return (1.0 - slo_percent / 100.0) * seconds


def linked(incidents: Iterable[Incident], recorded: Iterable[Any]) -> list[tuple[Incident, Any]]:
    """Each incident with the timeline event (``core.events.Event``) that overlaps it, if any."""
    evs = list(recorded)
    out = []
    for i in incidents:
        match = next((e for e in reversed(evs) if e.start <= i.end and e.start + e.total >= i.start - 1), None)
        out.append((i, match))
    return out
