"""Health verdicts for load balancers: a pure function of the node's state and the request.

Paths and meanings are Patroni's, so existing HAProxy configs keep working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True)
class NodeHealth:
    """The facts a health check needs, taken at the moment of the request."""

    holds_leader: bool  # leader key names us and our lease is good by our own clock
    pg_running: bool
    in_recovery: bool
    streaming: bool
    lag: int | None  # bytes behind the last primary position; None if unknown
    tags: Mapping[str, Any] = field(default_factory=dict)
    sync_standby: bool = False
    standby_leader: bool = False
    loop_age: float = 0.0  # seconds since the HA loop last completed
    dcs_age: float = 0.0  # seconds since etcd last answered
    ttl: float = 30.0
    draining: bool = False  # a rolling restart takes it out of the read path before restarting it


def parse_size(text: str) -> int:
    """``16kB`` -> 16384; raises ValueError on anything else."""
    m = _SIZE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"invalid size {text!r}: use bytes or a number with kB, MB, GB, TB")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _tags_match(h: NodeHealth, query: Mapping[str, str]) -> bool:
    for key, want in query.items():
        if key.startswith("tag_"):
            have = h.tags.get(key[4:])
            if str(have).lower() != want.lower():
                return False
    return True


def is_primary(h: NodeHealth) -> bool:
    return h.holds_leader and h.pg_running and not h.in_recovery


def is_replica(h: NodeHealth, query: Mapping[str, str]) -> bool:
    if not (h.pg_running and h.in_recovery and h.streaming) or h.tags.get("noloadbalance") or h.draining:
        return False
    if "lag" in query:
        if h.lag is None or h.lag > parse_size(query["lag"]):
            return False
    return _tags_match(h, query)


def verdict(path: str, query: Mapping[str, str], h: NodeHealth) -> int:
    """HTTP status for a health check: 200 when the condition holds, 503 otherwise.

    Raises ValueError for a malformed query (the handler answers 400).
    """
    p = path.rstrip("/") or "/"
    if p in ("/", "/primary", "/master", "/leader", "/read-write"):
        ok = is_primary(h) and _tags_match(h, query)
    elif p == "/standby-leader":
        ok = h.standby_leader and h.pg_running
    elif p == "/replica":
        ok = is_replica(h, query)
    elif p == "/read-only":
        ok = is_primary(h) or is_replica(h, query)
    elif p in ("/sync", "/synchronous"):
        ok = is_replica(h, query) and h.sync_standby
    elif p == "/async":
        ok = is_replica(h, query) and not h.sync_standby
    elif p == "/health":
        ok = h.pg_running
    elif p == "/liveness":
        ok = h.loop_age <= h.ttl
    elif p == "/readiness":
        ok = is_primary(h) or (h.pg_running and h.in_recovery and h.dcs_age <= h.ttl)
    else:
        raise KeyError(path)
    return 200 if ok else 503
