"""Clients through real HAProxy while the primary node is killed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgha.testing import FAST, HAProxy, LocalCluster, Node, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow

HAPROXY_INTERVAL = 0.5  # the checks' inter (pgha.testing.HAProxy, configs/haproxy.cfg)


@pytest.fixture
def proxied(make_cluster: Callable[..., LocalCluster]) -> Iterator[tuple[LocalCluster, HAProxy]]:
    c = make_cluster()
    c.start()
    # Every acknowledged commit must survive the failover: ack only once a standby has the WAL.
    # (Set once the replicas exist, or the bootstrap's own commits would wait for them.)
    params = {"synchronous_standby_names": "ANY 1 (*)", "synchronous_commit": "remote_write"}
    status, _, _ = http_request("PATCH", c.leader().api + "/config", {"postgresql": {"parameters": params}})
    assert status == 200
    for n in c.nodes:
        wait_for(f"sync settings on {n.name}",
                 lambda n=n: sql(n.dsn(), "SHOW synchronous_standby_names")[0][0] == "ANY 1 (*)", 15)
    proxy = HAProxy(c.base, c.nodes)
    proxy.start()
    yield c, proxy
    proxy.stop()


def dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres connect_timeout=2"


class Writer(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.acked: list[tuple[int, float, int]] = []  # (id, time, server port)
        self.stop = threading.Event()
        self.next_id = 0

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(dsn(self.port), autocommit=True)
                    conn.execute("SET statement_timeout = '3s'")
                self.next_id += 1
                row = conn.execute("INSERT INTO acked VALUES (%s) RETURNING inet_server_port()", (self.next_id,)).fetchone()
                assert row is not None
                self.acked.append((self.next_id, time.monotonic(), int(row[0])))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.002)


def test_writes_through_haproxy_survive_the_primary_being_killed(proxied: tuple[LocalCluster, HAProxy]) -> None:
    c, proxy = proxied
    old = c.leader()
    sql(old.dsn(), "CREATE TABLE acked (id int PRIMARY KEY)")
    wait_for("haproxy routing writes", lambda: sql(dsn(proxy.write_port), "SELECT NOT pg_is_in_recovery()")[0][0], 10)

    samples: list[int] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            samples.append(sum(1 for n in c.nodes if n.health("/primary") == 200))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    writer = Writer(proxy.write_port)
    writer.start()
    # reads while every replica is healthy never land on the primary
    for _ in range(40):
        assert sql(dsn(proxy.read_port), "SELECT pg_is_in_recovery()")[0][0] is True
        time.sleep(0.02)
    wait_for("steady writes", lambda: len(writer.acked) > 50, 10)
    t0 = time.monotonic()
    old.signal_agent(signal.SIGKILL)
    old.kill_postgres(signal.SIGKILL)
    wait_for("writes acknowledged by the new primary",
             lambda: any(t > t0 and port != old.pg_port for _, t, port in writer.acked), 30, 0.05)
    time.sleep(1.0)
    writer.stop.set()
    writer.join(10)
    stop_sampling.set()
    sampler.join(5)

    new = c.leader()
    assert new.name != old.name
    present = {r[0] for r in sql(new.dsn(), "SELECT id FROM acked")}
    missing = [i for i, _, _ in writer.acked if i not in present]
    assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:10]}"
    assert max(samples) == 1, "two nodes answered 200 on /primary in one sample"
    after = [i for i, t, port in writer.acked if t > t0]
    assert after and all(port == new.pg_port for _, t, port in writer.acked if t > t0 and port != old.pg_port)
    check_failover_timeline(c, old, new, writer)


def check_failover_timeline(c: LocalCluster, old: Node, new: Node, writer: Writer) -> None:
    """The new primary recorded the failover with its four phases, and their total is the write
    gap the client saw, give or take what nobody can observe: the detection phase starts at the
    old leader's last lease renewal (estimated as leader key gone - ttl), up to loop_wait before
    its last write, and HAProxy needs a check to route to the new primary."""
    def recorded() -> dict[str, Any] | None:
        rows = http_request("GET", new.api + "/history?events=1", timeout=2)[1] or []
        return next((ev for ev in rows if ev["kind"] == "failover" and ev["node"] == new.name), None)

    event = wait_for("the failover in the timeline", recorded, 30)
    assert [p["name"] for p in event["phases"]] == ["detection", "election", "promotion", "first_write"]
    assert abs(sum(p["seconds"] for p in event["phases"]) - event["total"]) <= 0.1
    assert event["previous"] == old.name and event["phases"][0]["seconds"] == pytest.approx(FAST["ttl"], abs=0.6)
    last_old = max(t for _, t, port in writer.acked if port == old.pg_port)
    first_new = min(t for _, t, port in writer.acked if port == new.pg_port)
    gap = first_new - last_old
    assert abs(gap - event["total"]) <= FAST["loop_wait"] + 2 * HAPROXY_INTERVAL, (gap, event)

    out = subprocess.run([sys.executable, "-m", "pgha", "history", "--events", "-c", str(new.config_path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "failover" in out and "detection" in out and event["node"] in out
    as_json = subprocess.run([sys.executable, "-m", "pgha", "history", "--events", "-f", "json", "-c",
                              str(new.config_path)], capture_output=True, text=True, timeout=30, check=True).stdout
    assert event in json.loads(as_json)
    metrics = str(http_request("GET", new.api + "/metrics", timeout=2)[1])
    assert re.search(r'pgha_failover_phase_seconds_count\{[^}]*phase="election"[^}]*\} 1\.0', metrics), metrics

    # The heartbeat's ledger saw the same gap, minus its one-second interval, give or take when the
    # old primary's last heartbeat and the new primary's first fell.
    def availability() -> dict[str, Any] | None:
        out = subprocess.run([sys.executable, "-m", "pgha", "availability", "--since", "1h", "--slo", "99.9", "-f",
                              "json", "-c", str(new.config_path)], capture_output=True, text=True, timeout=30, check=False)
        report: dict[str, Any] | None = json.loads(out.stdout) if out.returncode == 0 else None
        return report if report and report["incidents"] else None

    report = wait_for("the failover in the availability ledger", availability, 30)
    assert abs(report["down_seconds"] - gap) <= 2.0, (report, gap)
    assert report["incidents"][0]["event"]["kind"] == "failover" and report["uptime_percent"] < 100
    assert report["slo"]["used_percent"] > 0 and report["nines"] > 0


def test_stopped_primary_answers_503_for_a_moment_so_load_balancers_route_elsewhere(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    old.signal_agent(signal.SIGTERM)
    seen: list[int] = []
    end = time.monotonic() + 30
    while old.agent_alive and time.monotonic() < end:
        seen.append(old.health("/primary"))
        time.sleep(0.05)
    assert not old.agent_alive, "the agent did not stop"
    first_refusal = seen.index(503) if 503 in seen else len(seen)
    assert 200 not in seen[first_refusal:], f"answered 200 again after 503: {seen}"
    # about one second of 503s (20 polls); a loaded host polls less often
    assert seen.count(503) >= 5, f"no drain before the API went away: {seen}"
    assert "answering 503 for 1.0 s" in old.log_text()
    new = c.leader(30)
    assert new is not old
    replica_stop = time.monotonic()
    new_replica = next(n for n in c.nodes if n is not old and n is not new)
    new_replica.stop()
    assert time.monotonic() - replica_stop < 3
    assert "answering 503" not in new_replica.log_text()
