"""Scenarios on real etcd, Postgres 15 and pgha agents (ttl 6, loop_wait 1, retry_timeout 2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest

from pgha.testing import LocalCluster, Node, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow
TTL = 6


def in_recovery(node: Node) -> bool | None:
    """True read-only, False writable, None down."""
    try:
        return bool(sql(node.dsn(), "SELECT pg_is_in_recovery()")[0][0])
    except Exception:  # noqa: BLE001 - down is neither
        return None


def writable(node: Node) -> bool:
    return in_recovery(node) is False


def timeline(node: Node) -> int:
    st = node.status()
    assert st is not None
    return int(st["timeline"])


def write_marker(node: Node, value: str) -> None:
    sql(node.dsn(), "CREATE TABLE IF NOT EXISTS marks (v text)")
    sql(node.dsn(), "INSERT INTO marks VALUES (%s)", (value,))


def has_marker(node: Node, value: str) -> bool:
    try:
        return bool(sql(node.dsn(), "SELECT 1 FROM marks WHERE v = %s", (value,)))
    except Exception:  # noqa: BLE001
        return False


def others(c: LocalCluster, node: Node) -> list[Node]:
    return [n for n in c.nodes if n is not node]


def test_three_nodes_bootstrap_into_one_primary_and_two_streaming_replicas(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    primary = c.leader()
    replicas = others(c, primary)
    assert [n.health("/replica") for n in replicas] == [200, 200]
    assert primary.health("/replica") == 503
    assert all(n.health("/primary") == 503 for n in replicas)
    write_marker(primary, "hello")
    for r in replicas:
        wait_for(f"row on {r.name}", lambda r=r: has_marker(r, "hello"), 10)
    slots = {row[0] for row in sql(primary.dsn(), "SELECT slot_name FROM pg_replication_slots WHERE active")}
    assert slots == {r.name for r in replicas}
    status = primary.status()
    assert status is not None and status["role"] == "primary" and status["timeline"] == 1
    assert not any("demoting" in n.log_text() for n in c.nodes), "a node demoted during a clean bootstrap"
    assert status["xlog"]["location"] > 0 and status["leader"] == primary.name
    rstatus = replicas[0].status()
    assert rstatus is not None and rstatus["replication_state"] == "streaming"
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(primary.config_path), "-f", "json"],
                         capture_output=True, text=True, check=True)
    rows = {r["Member"]: r for r in json.loads(out.stdout)}
    assert rows[primary.name]["Role"] == "Leader"
    assert sorted(r["State"] for n, r in rows.items() if n != primary.name) == ["streaming", "streaming"]
    table = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(primary.config_path)],
                           capture_output=True, text=True, check=True).stdout
    assert "| Member | Host" in table and "Lag in MB" in table and primary.name in table


def test_primary_node_killed_replica_takes_over_within_ttl_and_old_node_rejoins(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    write_marker(old, "before")
    t0 = time.monotonic()
    old.signal_agent(signal.SIGKILL)
    old.kill_postgres(signal.SIGKILL)
    new = wait_for("a new writable primary", lambda: next((n for n in others(c, old) if writable(n)), None), TTL + 5, 0.05)
    write_marker(new, "after")
    took = time.monotonic() - t0
    assert took <= TTL + 3, f"failover took {took:.1f}s"
    assert c.leader().name == new.name
    old.start()
    wait_for("old node streaming from the new primary", lambda: old.health("/replica") == 200, 60)
    wait_for("write after failover on the old node", lambda: has_marker(old, "after"), 10)
    assert not writable(old)
    # it started as the new primary's replica first: its WAL ended before the fork (nothing was
    # written after the marker, unless a heartbeat just before the kill), or it was rewound
    log = old.log_text()
    assert "rejoined without a rewind" in log or "rewinding from" in log, log[-3000:]


def test_primary_agent_sigterm_hands_over_within_3s(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    t0 = time.monotonic()
    old.signal_agent(signal.SIGTERM)
    new = wait_for("a new writable primary", lambda: next((n for n in others(c, old) if writable(n)), None), 10, 0.05)
    took = time.monotonic() - t0
    write_marker(new, "x")
    assert took <= 3, f"handover took {took:.1f}s"
    old.wait_agent_exit(10)
    assert old.postmaster_pid() is None


def test_primary_postmaster_killed_is_restarted_in_place_without_failover(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    primary = c.leader()
    tl = timeline(primary)
    primary.kill_postgres(signal.SIGKILL)
    wait_for("primary writable again", lambda: writable(primary), 15, 0.05)
    write_marker(primary, "after-crash")
    assert c.leader().name == primary.name
    assert timeline(primary) == tl
    assert not any(writable(n) for n in others(c, primary))


def test_primary_agent_sigstop_beyond_ttl_is_replaced_and_demotes_on_resume(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    old.signal_agent(signal.SIGSTOP)
    try:
        new = wait_for("a replica promoted", lambda: next((n for n in others(c, old) if writable(n)), None), TTL + 10, 0.1)
    finally:
        old.signal_agent(signal.SIGCONT)
    end = time.monotonic() + 8
    answers = []
    while time.monotonic() < end:
        answers.append(old.health("/primary"))
        time.sleep(0.05)
    assert 200 not in answers
    wait_for("old primary read-only", lambda: not writable(old) and old.postmaster_pid() is not None, 20)
    assert c.leader().name == new.name
    wait_for("old primary streaming from the new one", lambda: old.health("/replica") == 200, 60)


def test_etcd_down_primary_turns_read_only_and_comes_back_on_the_same_timeline(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    primary = c.leader()
    tl = timeline(primary)
    t0 = time.monotonic()
    c.etcd.stop()
    wait_for("primary read-only", lambda: not writable(primary), TTL + 2, 0.05)
    assert time.monotonic() - t0 <= TTL
    time.sleep(3)
    assert not any(writable(n) for n in c.nodes)
    c.etcd.start()
    wait_for("the same node writable again", lambda: writable(primary), 30, 0.1)
    assert c.leader().name == primary.name
    assert timeline(primary) == tl
    assert not any(writable(n) for n in others(c, primary))


def test_leader_back_from_an_etcd_outage_resumes_without_waiting_on_a_stuck_read_only_backend(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """Resuming restarts the read-only server as a primary. A clean stop of it waits for every
    backend and walsender (a replica behind a dead link holds one until wal_sender_timeout, 60 s);
    the server only replays WAL it wrote itself, so an immediate stop loses nothing."""
    c = make_cluster(nodes=1)
    c.start()
    primary = c.leader()
    c.etcd.stop()
    wait_for("primary restarted read-only", lambda: in_recovery(primary) is True, TTL + 10, 0.1)
    stuck = psycopg.connect(primary.dsn(), autocommit=True)
    pid = int(stuck.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
    os.kill(pid, signal.SIGSTOP)  # a session that never answers a clean shutdown's SIGTERM
    try:
        c.etcd.start()
        back = time.monotonic()
        wait_for("the same node writable again", lambda: writable(primary), 90, 0.1)
        assert time.monotonic() - back < 30, "the resume waited on the stuck backend"
        assert c.leader().name == primary.name
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        stuck.close()


def _make_lag(primary: Node, replica: Node) -> None:
    sql(replica.dsn(), "SELECT pg_wal_replay_pause()")
    sql(primary.dsn(), "CREATE TABLE bulk AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g")
    lag_mb = lambda: (replica.status() or {}).get("lag", 0) > 4 * 1048576  # noqa: E731
    wait_for("replica lag above 4 MB", lag_mb, 15)


def test_replica_beyond_maximum_lag_is_not_promoted(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    primary = c.leader()
    lagging, healthy = others(c, primary)
    _make_lag(primary, lagging)
    primary.signal_agent(signal.SIGKILL)
    primary.kill_postgres(signal.SIGKILL)
    wait_for("healthy replica promoted", lambda: writable(healthy), TTL + 5, 0.1)
    assert not writable(lagging)
    assert "not eligible for promotion" in lagging.log_text()


def test_no_node_promoted_when_the_only_replica_lags(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2)
    c.start()
    primary = c.leader()
    (lagging,) = others(c, primary)
    _make_lag(primary, lagging)
    primary.signal_agent(signal.SIGKILL)
    primary.kill_postgres(signal.SIGKILL)
    end = time.monotonic() + TTL + 5
    while time.monotonic() < end:
        assert not writable(lagging)
        time.sleep(0.2)
    assert "not eligible for promotion" in lagging.log_text()


def test_one_etcd_member_of_three_killed_causes_no_failover(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(etcd_members=3)
    c.start()
    primary = c.leader()
    tl = timeline(primary)
    c.etcd.kill(0)  # every agent lists this member first
    end = time.monotonic() + TTL + 4
    while time.monotonic() < end:
        assert primary.health("/primary") == 200
        time.sleep(0.1)
    assert writable(primary) and timeline(primary) == tl
    assert not any(writable(n) for n in others(c, primary))
    assert all("demoting" not in n.log_text() for n in c.nodes)


def test_one_etcd_member_stopped_again_and_again_causes_no_failover(make_cluster: Callable[..., LocalCluster]) -> None:
    """A slow member (SIGSTOP 3 s, SIGCONT 1 s, for 4 ttl): connections to it open and requests
    hang, unlike a killed member's refused connections."""
    c = make_cluster(etcd_members=3)
    c.start()
    primary = c.leader()
    tl = timeline(primary)
    slow = c.etcd.members[0]  # every agent lists this member first
    assert slow.proc is not None
    end = time.monotonic() + 4 * TTL
    try:
        while time.monotonic() < end:
            slow.proc.send_signal(signal.SIGSTOP)
            stop_until = time.monotonic() + 3
            while time.monotonic() < stop_until:
                assert c.leader(0.5) is primary
                time.sleep(0.2)
            slow.proc.send_signal(signal.SIGCONT)
            time.sleep(1)
    finally:
        slow.proc.send_signal(signal.SIGCONT)
    assert writable(primary) and timeline(primary) == tl
    assert not any(writable(n) for n in others(c, primary))
    assert all("demoting" not in n.log_text() for n in c.nodes)


def test_node_with_data_of_another_cluster_refuses_to_join(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    foreign = others(c, c.leader())[0]
    foreign.stop()
    shutil.rmtree(foreign.data_dir)
    foreign.data_dir.mkdir()
    shutil.chown(foreign.data_dir, "postgres", "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/initdb", "-D", str(foreign.data_dir),
                    "--no-sync"], check=True, capture_output=True)
    foreign.start()
    wait_for("refusal in the log", lambda: "belongs to another cluster" in foreign.log_text(), 15)
    assert foreign.postmaster_pid() is None


def test_replica_with_a_wrong_replication_password_is_never_a_candidate_and_says_why(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    primary = c.leader()
    broken, healthy = others(c, primary)
    broken.stop()
    broken.config["postgresql"]["authentication"]["replication"]["password"] = "not-the-password"
    broken.start()
    wait_for(f"{broken.name} running without streaming", lambda: (broken.status() or {}).get(
        "stream_error", "").startswith("password authentication failed"), 60)
    assert broken.health("/replica") == 503 and healthy.health("/replica") == 200

    def listed() -> str | None:
        out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(primary.config_path)],
                             capture_output=True, text=True, timeout=30)
        line = f"{broken.name} does not stream: password authentication failed for user"
        return out.stdout if line in out.stdout else None
    wait_for("pgha list says why", listed, 30)

    primary.signal_agent(signal.SIGKILL)
    primary.kill_postgres(signal.SIGKILL)
    wait_for(f"{healthy.name} takes over", lambda: writable(healthy), TTL + 15)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert not writable(broken)
        time.sleep(0.2)
    assert "racing for the leader key" not in broken.log_text()
