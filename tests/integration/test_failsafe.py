"""Failsafe mode on real processes: with every member up, the primary rides out an etcd outage
of three ttl with no gap in its writes and no failover, confirmed by its members over an
authenticated ``POST /failsafe``; ``/failsafe`` answers as Patroni's does. (The same outage with a
replica cut off from the primary is a partition-lab scenario: test_partitions.py.)"""

from __future__ import annotations

import base64
import itertools
import signal
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for

pytestmark = pytest.mark.slow

AUTH = {"username": "pgha", "password": "fs-secret"}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"pgha:fs-secret").decode()}
TTL = float(FAST["ttl"])


def failsafe_key(node: Node) -> dict[str, str] | None:
    status, body, _ = http_request("GET", node.api + "/failsafe", timeout=2)
    return body if status == 200 and isinstance(body, dict) else None


def metric(node: Node, name: str) -> float:
    text = http_request("GET", node.api + "/metrics", timeout=2)[1]
    line = next(x for x in str(text).splitlines() if x.startswith((name + "{", name + " ")))
    return float(line.rsplit(" ", 1)[1])


class Writer(threading.Thread):
    """Commits one row after another straight to ``node`` and keeps when each was acknowledged."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node, self.stop, self.acked = node, threading.Event(), list[float]()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.node.dsn(), autocommit=True) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS beats (at timestamptz DEFAULT now())")
                    while not self.stop.is_set():
                        conn.execute("INSERT INTO beats DEFAULT VALUES")
                        self.acked.append(time.monotonic())
                        time.sleep(0.01)
            except psycopg.Error:
                time.sleep(0.05)

    def largest_gap(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.acked if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_failsafe_primary_rides_out_an_etcd_outage_of_three_ttl_without_a_write_gap(
        make_cluster: Callable[..., LocalCluster], sync: bool) -> None:
    """In synchronous mode too: the standby keeps acknowledging commits while etcd is away, and
    nobody rewrites synchronous_standby_names or the sync key without it."""
    mode = {"synchronous_mode": "on"} if sync else {}
    c = make_cluster(dcs={**FAST, "failsafe_mode": True, **mode},
                     restapi={f"n{i}": {"authentication": AUTH} for i in (1, 2, 3)})
    c.start()
    leader = c.leader()
    replica = next(n for n in c.nodes if n is not leader)
    key = wait_for("the failsafe key with every member", lambda: (k := failsafe_key(leader)) and len(k) == 3 and k, 20)
    assert key == {n.name: n.api + "/patroni" for n in c.nodes}

    # The endpoint as Patroni's: authenticated, refused by a primary, accepted by a replica.
    assert http_request("POST", replica.api + "/failsafe", {"name": leader.name}, timeout=2)[0] == 401
    assert http_request("POST", replica.api + "/failsafe", {"nam": 1}, headers=BASIC, timeout=2)[0] == 400
    status, body, _ = http_request("POST", leader.api + "/failsafe", {"name": replica.name}, headers=BASIC, timeout=2)
    assert (status, body) == (500, "Running as a leader")
    status, body, headers = http_request("POST", replica.api + "/failsafe", {"name": leader.name}, headers=BASIC,
                                         timeout=2)
    assert (status, body) == (200, "Accepted") and int(headers["lsn"]) > 0

    if sync:
        standbys = wait_for("a synchronous standby recorded", lambda: (leader.status() or {}).get(
            "synchronous_standbys"), 30)
    pid, timeline = leader.postmaster_pid(), (leader.status() or {})["timeline"]
    writer = Writer(leader)
    writer.start()
    wait_for("writes acknowledged", lambda: len(writer.acked) > 20, 20)
    t0 = time.monotonic()
    c.etcd.kill(0, signal.SIGSTOP)
    try:
        time.sleep(TTL)
        assert leader.health("/primary") == 200, "HAProxy would stop routing to the confirmed primary"
        assert (leader.status() or {}).get("failsafe_mode_is_active") is True
        assert metric(replica, "patroni_failsafe_mode_is_active") == 1.0
        time.sleep(2 * TTL)
    finally:
        c.etcd.kill(0, signal.SIGCONT)
    t1 = time.monotonic()
    assert leader.postmaster_pid() == pid, "the primary was stopped or restarted"
    gap = writer.largest_gap(t0, t1)
    wait_for("writes acknowledged after etcd returned", lambda: writer.acked[-1] > t1 + 1, 20)
    writer.stop.set()
    writer.join(10)
    assert gap < 1.0, f"writes stopped for {gap:.2f} s during the etcd outage"
    assert c.wait_healthy(30) is leader
    assert (leader.status() or {})["timeline"] == timeline, "a failover happened"
    if sync:
        assert (leader.status() or {}).get("synchronous_standbys") == standbys
    # It stayed primary on its members' confirmations (whether etcd expired the leases in the
    # outage, so that it took the leader key again, depends on etcd's lessor: both end here).
    assert "primary while its 2 other member(s) confirm it (failsafe mode)" in leader.log_text()
