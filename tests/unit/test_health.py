"""Health verdicts: every path against every node state."""

from __future__ import annotations

import pytest

from pgha.core.health import NodeHealth, parse_size, verdict

PRIMARY = NodeHealth(holds_leader=True, pg_running=True, in_recovery=False, streaming=False, lag=0)
STREAMING = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=100)
LAGGING = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=100 * 1024**2)
NOT_STREAMING = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=False, lag=0)
NOLB = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0,
                  tags={"noloadbalance": True})
PG_DOWN = NodeHealth(holds_leader=True, pg_running=False, in_recovery=False, streaming=False, lag=None)
LEASE_EXPIRED = NodeHealth(holds_leader=False, pg_running=True, in_recovery=False, streaming=False, lag=0)
STALE_LOOP = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0,
                        loop_age=60, dcs_age=60, ttl=30)

SYNC_STANDBY = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0,
                          sync_standby=True)

STATES = {"sync_standby": SYNC_STANDBY, "primary": PRIMARY, "streaming": STREAMING, "lagging": LAGGING, "not_streaming": NOT_STREAMING,
          "noloadbalance": NOLB, "pg_down": PG_DOWN, "lease_expired": LEASE_EXPIRED, "stale": STALE_LOOP}

# path -> states answering 200 (all others answer 503)
TABLE = {
    "/primary": {"primary"},
    "/": {"primary"},
    "/master": {"primary"},
    "/leader": {"primary"},
    "/read-write": {"primary"},
    "/replica": {"streaming", "lagging", "stale", "sync_standby"},
    "/replica?lag=1MB": {"streaming", "stale", "sync_standby"},
    "/read-only": {"primary", "streaming", "lagging", "stale", "sync_standby"},
    "/async": {"streaming", "lagging", "stale"},
    "/sync": {"sync_standby"},
    "/synchronous": {"sync_standby"},
    "/health": {"primary", "streaming", "lagging", "not_streaming", "noloadbalance", "lease_expired", "stale",
                "sync_standby"},
    "/liveness": {"primary", "streaming", "lagging", "not_streaming", "noloadbalance", "pg_down", "lease_expired",
                  "sync_standby"},
    "/readiness": {"primary", "streaming", "lagging", "not_streaming", "noloadbalance", "sync_standby"},
}


def _split(url: str) -> tuple[str, dict[str, str]]:
    path, _, q = url.partition("?")
    return path, dict(p.split("=", 1) for p in q.split("&") if p)


@pytest.mark.parametrize("url", sorted(TABLE))
@pytest.mark.parametrize("state", sorted(STATES))
def test_health_table(url: str, state: str) -> None:
    path, query = _split(url)
    want = 200 if state in TABLE[url] else 503
    assert verdict(path, query, STATES[state]) == want


def test_tag_filters_require_a_matching_tag() -> None:
    h = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0, tags={"dc": "east"})
    assert verdict("/replica", {"tag_dc": "east"}, h) == 200
    assert verdict("/replica", {"tag_dc": "west"}, h) == 503


@pytest.mark.parametrize(("text", "n"), [("0", 0), ("16kB", 16384), ("64MB", 64 * 1024**2), ("1GB", 1024**3), ("100", 100)])
def test_lag_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_malformed_lag_is_an_error_not_a_verdict() -> None:
    with pytest.raises(ValueError, match="invalid size"):
        verdict("/replica", {"lag": "lots"}, STREAMING)
