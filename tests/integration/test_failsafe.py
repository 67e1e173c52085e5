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


def writable(node: Node) -> bool:
    try:
        with psycopg.connect(node.dsn(), autocommit=True, connect_timeout=1) as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def test_replica_agent_restarted_in_an_outage_keeps_its_promise_not_to_race(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """A member that confirmed the primary promised not to race for ttl, and the primary counts on
    it: its Postgres stays writable until the fence fires, ttl - retry_timeout/2 after the last
    confirmed round, even with its agent frozen. A restart of that member's agent must not break
    the promise: no node may become writable before the old primary stops being writable."""
    ttl = 10
    c = make_cluster(dcs={"ttl": ttl, "loop_wait": 1, "retry_timeout": 2, "failsafe_mode": True})
    c.start()
    leader = c.leader()
    restarted, other = [n for n in c.nodes if n is not leader]
    wait_for("the failsafe key with every member", lambda: (k := failsafe_key(leader)) and len(k) == 3, 20)

    c.etcd.kill(0, signal.SIGSTOP)
    try:
        wait_for("the primary confirmed by its members",
                 lambda: (leader.status() or {}).get("failsafe_mode_is_active") is True, ttl)
        time.sleep(ttl + 1)  # every lease has expired on etcd's clock: no leader key once it is back
        assert writable(leader), "the confirmed primary stopped taking writes during the outage"
        leader.signal_agent(signal.SIGSTOP)  # its Postgres runs on until the fence fires
        frozen = time.monotonic()
        restarted.signal_agent(signal.SIGKILL)
        restarted.wait_agent_exit()
        restarted.start()
        wait_for("the restarted agent's API", restarted.status, 20)
    finally:
        c.etcd.kill(0, signal.SIGCONT)

    seen: dict[str, list[float]] = {n.name: [] for n in c.nodes}
    end = frozen + ttl + 3  # past the fence of the frozen primary and the others' promise
    try:
        while time.monotonic() < end:
            for n in c.nodes:
                if writable(n):
                    seen[n.name].append(time.monotonic())
            time.sleep(0.1)
    finally:
        leader.signal_agent(signal.SIGCONT)
    old_last = max(seen[leader.name], default=0.0)
    new_first = min((t for n in (restarted, other) for t in seen[n.name]), default=float("inf"))
    assert new_first > old_last, (
        f"two writable primaries: {leader.name} still took writes {old_last - new_first:.1f} s after another "
        f"node became writable; {restarted.name}'s log:\n{restarted.log_text()[-3000:]}")
    assert seen[leader.name], "the frozen primary's Postgres stopped at once: the scenario did not happen"
    c.wait_healthy(60)
