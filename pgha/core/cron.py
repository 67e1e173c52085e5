"""Cron schedules (``backup.schedule``): the five classic fields, in UTC (pure).

``minute hour day-of-month month day-of-week``, each ``*``, a number, a range ``a-b``, a list
``a,b`` or a step ``*/n`` / ``a-b/n``; day-of-week 0-7 (0 and 7: Sunday). As in cron, when both
day fields are restricted a day matches either of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
SEARCH_DAYS = 400  # how far back the last fire is looked for (a yearly schedule fits)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def day_matches(self, d: datetime) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = d.day in self.days, (d.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def last_fire(self, now: float) -> float | None:
        """The latest scheduled minute at or before ``now`` (epoch seconds), None within
        ``SEARCH_DAYS``."""
        # whole seconds first: fromtimestamp rounds to the microsecond, and 0.9999998 s before a
        # minute became that minute, a fire in the future (found by hypothesis)
        at = datetime.fromtimestamp(math.floor(now), timezone.utc).replace(second=0, microsecond=0)
        day = at.replace(hour=0, minute=0)
        for back in range(SEARCH_DAYS):
            d = day - timedelta(days=back)
            if not self.day_matches(d):
                continue
            for h in sorted(self.hours, reverse=True):
                for m in sorted(self.minutes, reverse=True):
                    t = d.replace(hour=h, minute=m)
                    if t <= at:
                        return t.timestamp()
        return None


def parse(text: str) -> Schedule:
    """A schedule, or ValueError naming the field that is wrong."""
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"a cron schedule has 5 fields (minute hour day month weekday), got {len(parts)}: {text!r}")
    sets = [_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    return Schedule(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, stop = lo, hi
            elif "-" in base:
                a, b = base.split("-", 1)
                start, stop = int(a), int(b)
            else:
                start = stop = int(base)
                if step_text:
                    stop = hi
        except ValueError:
            raise ValueError(f"cron {name}: {item!r} is not a number, range or step") from None
        if step < 1 or not lo <= start <= stop <= hi:
            raise ValueError(f"cron {name}: {item!r} is outside {lo}-{hi}")
        out.update(range(start, stop + 1, step))
    return frozenset(out)
