"""Operator schedules (a switchover or restart at a given time): parsed within a sane window and
shown in a form that cannot overflow, whatever a stored value says."""

from __future__ import annotations

import math
from datetime import datetime, timezone

MAX_AHEAD = 366 * 86400.0  # a schedule further away is a typo, not a plan


def parse(value: str, field: str, now: float) -> float:
    """Epoch seconds for an ISO 8601 time with a timezone, not in the past and within a year.
    Raises ValueError with a reason that names ``field``."""
    try:
        when = datetime.fromisoformat(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{field} must be an ISO 8601 time such as 2026-11-26T14:00:00+00:00") from exc
    if when.tzinfo is None:
        raise ValueError(f"{field} needs a timezone (for example +00:00)")
    try:
        ts = when.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise ValueError(f"{field} is out of range") from exc
    if ts < now - 1:
        raise ValueError(f"{field} is in the past")
    if ts > now + MAX_AHEAD:
        raise ValueError(f"{field} is more than a year ahead")
    return ts


def valid(epoch: float) -> bool:
    return math.isfinite(epoch) and -MAX_AHEAD * 100 < epoch < 253402300799.0  # before year 10000


def iso(epoch: float, timespec: str = "seconds") -> str:
    """``epoch`` as ISO 8601 UTC; a value no calendar can show is shown as a number."""
    if not valid(epoch):
        return f"@{epoch}"
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec=timespec)
