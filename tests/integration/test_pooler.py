"""Clients through a real PgBouncer that ``pgha pooler`` keeps on the primary: role changes
become latency instead of errors."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgha.testing import LocalCluster, http_get, http_request, wait_for
from pgha.testing.pooler import Pooled
from pgha.testing.workload import Workload, missing_on

pytestmark = pytest.mark.slow


@pytest.fixture
def pooled(make_cluster: Callable[..., LocalCluster]) -> Iterator[tuple[LocalCluster, Pooled]]:
    c = make_cluster()
    c.start()
    p = Pooled(c, c.base / "pooler")
    p.start(primary_port=c.leader().pg_port)
    wait_for("pooler registered", lambda: _poolers(c).get("bouncer1"), 15)
    yield c, p
    p.stop()


def _poolers(c: LocalCluster) -> dict[str, object]:
    status, body = http_get(c.leader().api + "/cluster")
    return dict((body or {}).get("poolers") or {}) if status == 200 else {}


def _switchover(c: LocalCluster, candidate: str) -> tuple[int, object]:
    status, body, _ = http_request("POST", c.leader().api + "/switchover",
                                   {"leader": c.leader().name, "candidate": candidate})
    return status, body


def _settle(c: LocalCluster, name: str) -> None:
    wait_for(f"{name} primary", lambda: c.leader().name == name and c.leader().health("/primary") == 200 or None, 30)


def test_switchover_through_pgbouncer_fails_no_statement_and_drops_no_connection(
        pooled: tuple[LocalCluster, Pooled]) -> None:
    c, p = pooled
    load = Workload(p.bouncer.dsn(), clients=8, long_tx=True, idle=True)
    load.setup()
    load.start()
    time.sleep(1.0)
    old = c.leader()
    new = next(n for n in c.nodes if n is not old)
    status, body = _switchover(c, new.name)
    assert status == 200, body
    _settle(c, new.name)
    wait_for("pooler on the new primary", lambda: f"port={new.pg_port}" in p.bouncer.databases_file.read_text() or None, 10)
    time.sleep(1.5)  # writes go on, on the new primary
    tally = load.stop()
    assert tally.failed == 0, tally.errors
    assert tally.dropped == 0
    assert load.idle_survived()
    assert len(tally.acked) > 100
    assert missing_on(new.dsn(), tally.acked) == []
    assert "paused" in p.watcher.log_text() or "pausing" in p.watcher.log_text()


def test_primary_killed_queued_statements_complete_on_the_new_primary(pooled: tuple[LocalCluster, Pooled]) -> None:
    c, p = pooled
    load = Workload(p.bouncer.dsn(), clients=4, idle=True)
    load.setup()
    load.start()
    time.sleep(1.0)
    old = c.leader()
    old.signal_agent(signal.SIGKILL)
    old.kill_postgres(signal.SIGKILL)
    killed = time.monotonic()
    new = c.leader(timeout=30)
    assert new is not old
    wait_for("pooler on the new primary", lambda: f"port={new.pg_port}" in p.bouncer.databases_file.read_text() or None, 20)
    time.sleep(1.0)
    tally = load.stop()
    # Statements fail only in the window before the watcher sees the primary gone (its probe
    # interval, 0.1 s; these clients retry every 5 ms): every one sent later queues and completes
    # on the new primary, though the leader key stayed until its ttl ran out.
    assert max(tally.failed_at, default=killed) < killed + 0.5, tally.errors
    assert load.idle_survived()
    after = [s for s, _ in tally.latencies if s > killed + 0.5]
    assert after, "no statement was sent after the kill"
    assert missing_on(new.dsn(), tally.acked) == []
