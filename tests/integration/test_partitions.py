"""The partition lab: 3 etcd members and 3 nodes, each in its own network namespace on a test
bridge, clients writing through HAProxy and straight to every node's Postgres. Each scenario
injects one fault for real (SIGSTOP, SIGKILL, silent packet drops, a one-way cut, a link down, the
cgroup freezer, an etcd member lost or in the minority, flapping), heals it, and checks the whole
history: no fork and no late write (a write acknowledged by a node after another node began a
newer timeline) in either mode, no phantom, and in strict synchronous mode no acknowledged write
lost. In asynchronous mode the loss is printed, not asserted: what the old primary acknowledged
and had not shipped is gone by design.

One lab per mode serves every scenario (each starts from a healthy cluster). The per-scenario
write counts over many runs are measured by ``bench/fence.py``."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgha.testing import Node, http_request, wait_for
from pgha.testing.netlab import why_not_available
from pgha.testing.pooler import Pooled
from pgha.testing.workload import Workload, missing_on, sent_since
from tests.history import Report
from tests.partition import (
    FAULTS,
    TTL,
    Lab,
    Recorder,
    cut_primary,
    etcd_leader,
    heal_everything,
    open_lab,
    settle,
    writes_resumed,
)

pytestmark = [pytest.mark.slow, pytest.mark.lab]

SYNC_ONLY = pytest.mark.parametrize("lab", ["sync"], indirect=True)
ASYNC_ONLY = pytest.mark.parametrize("lab", ["async"], indirect=True)


@pytest.fixture(scope="module", params=["sync", "async"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    problem = why_not_available()
    if problem:
        pytest.skip(problem)
    mode = str(request.param)
    with open_lab(mode, f"{os.getpid() % 100000}{mode[0]}") as made:
        yield made


@pytest.fixture
def healthy(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Every scenario starts from one primary, two streaming replicas and a recorded sync standby,
    and leaves the lab healed, whatever happened."""
    settle(lab)
    yield lab
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        print(lab.cluster.dump_logs())
    heal_everything(lab)


# Clients connected to the old primary: two through HAProxy, one straight to its port. Each has at
# most one statement in flight, so at most this many acknowledgements can be held back.
PER_NODE_CLIENTS = 3


def assert_clean(report: Report, lab: Lab, inflight_bound: int = 0, delayed_bound: int = 0) -> None:
    assert report.acknowledged > 50, report.summary()
    assert report.forks == [], f"forked histories in rows {[f[0] for f in report.forks]}"
    assert report.late == [], f"writes sent and executed after a newer timeline began elsewhere: {report.late[:10]}"
    assert len(report.inflight) <= inflight_bound, f"writes in flight across the fault, run late: {report.inflight[:10]}"
    assert len(report.delayed) <= delayed_bound, f"acknowledgements held back: {report.delayed[:10]}"
    if lab.sync:
        assert report.lost == [], f"acknowledged writes lost: {report.lost[:20]}"
    assert report.phantoms == [], f"failed writes that appeared: {report.phantoms[:20]}"


def test_primary_agent_sigstopped_longer_than_ttl_leaves_one_writer(healthy: Lab) -> None:
    with Recorder(healthy) as rec:
        FAULTS["sigstop primary agent"](healthy, rec)
        assert_clean(rec.report("sigstop primary agent"), healthy)


def test_primary_agent_killed_with_postgres_left_running_leaves_one_writer(healthy: Lab) -> None:
    with Recorder(healthy) as rec:
        old = FAULTS["sigkill primary agent"](healthy, rec)
        assert old.postmaster_pid() is None, "the fence let the orphaned primary run"
        assert_clean(rec.report("sigkill primary agent"), healthy)


def test_primary_agent_restarted_within_a_second_causes_no_failover(healthy: Lab) -> None:
    old = healthy.cluster.leader()
    pid = old.postmaster_pid()
    with Recorder(healthy) as rec:
        before = rec.timelines()
        logged = len(old.log_text())
        old.signal_agent(signal.SIGKILL)
        old.wait_agent_exit(5)
        time.sleep(0.5)
        old.start()
        time.sleep(TTL + 2)
        # What the restarted agent did, so that a failure in CI explains itself in one line.
        since = old.log_text()[logged:][-3000:]
        fired = Path(f"{old.data_dir}.fence.fired")
        why = f"agent log since the restart:\n{since}\nfence firings: {fired.read_text() if fired.exists() else 'none'}"
        assert healthy.cluster.leader() is old, why
        assert old.postmaster_pid() == pid, f"postgres was restarted; {why}"
        assert rec.timelines() == before, f"a failover happened; {why}"
        assert_clean(rec.report("restart primary agent"), healthy)


@pytest.mark.parametrize("cut", ["etcd_and_replicas", "etcd_only", "one_way_to_etcd"])
def test_primary_cut_off_stops_writes_and_one_replica_takes_over(healthy: Lab, cut: str) -> None:
    old = healthy.cluster.leader()
    logged = len(old.log_text())
    with Recorder(healthy) as rec:
        cut_primary(healthy, rec, cut)
        wait_for(f"{old.name} streaming as a replica", lambda: old.health("/replica") == 200, 60)
        assert_clean(rec.report(f"primary cut ({cut})"), healthy)
    if cut == "etcd_and_replicas":  # it took writes the replicas never got: its WAL goes past the fork
        log = old.log_text()[logged:]
        assert "rewinding from" in log and "rejoined without a rewind" not in log, log[-3000:]


def test_primary_isolated_by_link_down_rejoins_as_a_replica(healthy: Lab) -> None:
    with Recorder(healthy) as rec:
        old = FAULTS["primary link down"](healthy, rec)
        wait_for(f"{old.name} streaming as a replica", lambda: old.health("/replica") == 200, 90)
        # A statement the old primary ran just before its link went down is acknowledged when the
        # link comes back (TCP retransmits the reply), after the new primary began: delayed, not
        # late. It is lost in asynchronous mode, like any write the replicas had not received.
        assert_clean(rec.report("primary link down"), healthy, delayed_bound=PER_NODE_CLIENTS)


def test_whole_primary_node_frozen_then_thawed_leaves_one_writer(healthy: Lab) -> None:
    with Recorder(healthy) as rec:
        FAULTS["primary node frozen"](healthy, rec)
        # A whole frozen node thaws all at once: a commit it had flushed before the freeze (and,
        # in synchronous mode, whose confirmation from the standby was already in its socket) is
        # acknowledged by the thawed backend (delayed), and a statement already in a backend's
        # socket may run before the thawed fence fires (in flight): at most one per client
        # connected to it. In synchronous mode such a commit is on the new primary too (nothing
        # is lost, checked below); in asynchronous mode it is lost with its branch. A watchdog
        # device closes this: its timer runs on while the node is frozen. Nothing sent after the
        # fence's deadline runs: the kernel's port gate resets it (0 late writes).
        assert_clean(rec.report("primary node frozen"), healthy, inflight_bound=PER_NODE_CLIENTS,
                     delayed_bound=PER_NODE_CLIENTS)


@ASYNC_ONLY
def test_statement_sent_to_a_frozen_primary_past_its_deadline_fails_at_once(healthy: Lab) -> None:
    """The whole node frozen (agent, fence and Postgres): past the fence's deadline the kernel's
    port gate resets the client at once. Without it the statement waited in the frozen backend's
    socket and ran at the thaw, acknowledged after another node had taken over."""
    old = healthy.cluster.leader()
    conn = psycopg.connect(old.dsn(), autocommit=True)
    conn.execute("SELECT 1")
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            conn.execute("UPDATE reg SET v = v || -1 WHERE k = 0")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the outcome is the test's to judge
            outcome.append(exc)

    healthy.net.freeze(old.name, True)
    try:
        time.sleep(TTL)  # past the deadline: ttl - retry_timeout / 2 after the last renewal
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(3)
        assert outcome, "the statement waited in the frozen backend's socket"
        assert isinstance(outcome[0], psycopg.OperationalError), f"the frozen primary took it: {outcome[0]!r}"
    finally:
        healthy.net.freeze(old.name, False)
        conn.close()
    wait_for("a new primary", lambda: healthy.cluster.leader() is not old or None, 60)
    fired = Path(f"{old.data_dir}.fence.fired")
    assert fired.exists(), "the thawed fence did not stop the old primary"


def test_etcd_member_of_the_primary_in_the_minority_is_not_trusted(healthy: Lab) -> None:
    lab = healthy
    first, *rest = [m.name for m in lab.cluster.etcd.members]  # every agent starts on the first endpoint
    with Recorder(lab) as rec:
        for other in rest:
            lab.net.drop(first, other)
        time.sleep(TTL + 3)
        lab.net.heal()
        assert_clean(rec.report("etcd member in the minority"), healthy)


def test_etcd_leader_lost_causes_no_failover_and_no_demotion(healthy: Lab) -> None:
    lab, old = healthy, healthy.cluster.leader()
    pid = old.postmaster_pid()
    leader_member = wait_for("the etcd leader", lambda: etcd_leader(lab), 15) - 1
    with Recorder(lab) as rec:
        before = rec.timelines()
        t0 = time.monotonic()
        lab.cluster.etcd.kill(leader_member)
        time.sleep(TTL + 2)
        assert rec.acked(t0 + 2) > 20, "writes stopped"
        assert lab.cluster.leader() is old and old.postmaster_pid() == pid, "the primary changed or restarted"
        assert rec.timelines() == before
        assert_clean(rec.report("etcd leader lost"), healthy)


@SYNC_ONLY  # asynchronous mode promises nothing about writes a replica never received
def test_replica_cut_from_the_primary_is_never_promoted_ahead_of_acknowledged_writes(healthy: Lab) -> None:
    lab, old = healthy, healthy.cluster.leader()
    sync_name = (old.status() or {})["synchronous_standbys"][0]
    cut = lab.cluster.node(sync_name)
    with Recorder(lab) as rec:
        lab.net.drop(cut.name, old.name)
        t0 = time.monotonic()
        writes_resumed(rec, t0 + 2)  # the leader moves its synchronous standby to the other replica
        old.signal_agent(signal.SIGKILL)
        old.kill_postgres(signal.SIGKILL)
        new = wait_for("a new primary", lambda: next(iter(lab.cluster.primaries()), None), 60)
        assert new is not cut, f"{cut.name} was promoted though cut off from the primary"
        writes_resumed(rec, time.monotonic())  # the new primary serves writes before the cut heals
        lab.net.heal()
        assert_clean(rec.report("replica cut from the primary"), healthy)


@SYNC_ONLY  # the ping-pong check does not depend on the mode; one minute of flapping is enough
def test_flapping_partition_causes_at_most_one_failover(healthy: Lab) -> None:
    lab, old = healthy, healthy.cluster.leader()
    rng = random.Random(7)
    with Recorder(lab) as rec:
        before = rec.timelines()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            for member in lab.cluster.etcd.members:
                lab.net.drop(old.name, member.name)
            time.sleep(rng.uniform(2, 5))
            lab.net.heal()
            time.sleep(rng.uniform(2, 5))
        report = rec.report("flapping")
        failovers = len(rec.timelines() - before)
    assert failovers <= 1, f"{failovers} failovers while flapping (ping-pong)"
    assert_clean(report, lab)


def set_failsafe_mode(lab: Lab, on: bool) -> None:
    leader = lab.cluster.leader()
    assert http_request("PATCH", leader.api + "/config", {"failsafe_mode": on}, timeout=5)[0] == 200
    if on:
        wait_for("every member in the failsafe key", lambda: len(
            http_request("GET", leader.api + "/failsafe", timeout=2)[1] or {}) == len(lab.cluster.nodes), 20)


@ASYNC_ONLY  # failsafe mode does not depend on the replication mode
def test_failsafe_primary_that_cannot_reach_one_replica_demotes_before_ttl_when_etcd_goes_down(healthy: Lab) -> None:
    """Failsafe mode keeps a primary cut off from etcd only while every member confirms it: one
    replica it cannot reach makes it demote as usual, before its lease could expire, so that
    replica (which got no confirmation request and may race) cannot meet a second writer."""
    lab, old = healthy, healthy.cluster.leader()
    cut = next(n for n in lab.cluster.nodes if n is not old)
    set_failsafe_mode(lab, True)
    try:
        with Recorder(lab) as rec:
            lab.net.drop(old.name, cut.name)
            t0 = time.monotonic()
            for i in range(len(lab.cluster.etcd.members)):
                lab.cluster.etcd.kill(i, signal.SIGSTOP)
            time.sleep(TTL + 1)
            last = max(o.at for o in rec.ops if o.outcome == "ok" and o.node == old.host)
            assert last - t0 < TTL, f"the old primary took writes {last - t0:.1f} s into the etcd outage"
            assert f"failsafe round failed ({cut.name}: unreachable" in old.log_text()
            for i in range(len(lab.cluster.etcd.members)):
                lab.cluster.etcd.kill(i, signal.SIGCONT)
            lab.net.heal()
            assert_clean(rec.report("failsafe: etcd down, a replica unreachable"), healthy)
    finally:
        for i in range(len(lab.cluster.etcd.members)):
            lab.cluster.etcd.kill(i, signal.SIGCONT)
        settle(lab)
        set_failsafe_mode(lab, False)


def test_whole_primary_node_frozen_gets_no_write_through_the_pooler(healthy: Lab) -> None:
    """PgBouncer and its watcher in the host namespace, clients writing through it. The whole
    primary node frozen (agent and Postgres, as a stalled VM): the pool pauses once the watcher's
    probe of the leader times out, moves to the new primary with its idle connection kept, and
    nothing sent after that pause is acknowledged by the old primary; in synchronous mode every
    acknowledgement survives. Statements already sent to the frozen node (in flight, or in the
    probe's window) hang until the thaw, as they would on a direct connection."""
    lab = healthy
    old = lab.cluster.leader()
    others = [n for n in lab.cluster.nodes if n is not old]
    pooled = Pooled(lab.cluster, lab.cluster.base / f"pooler-{lab.mode}")
    pooled.start(primary_port=old.pg_port)
    load = Workload(pooled.bouncer.dsn(), clients=4, idle=True)
    try:
        load.setup()
        load.start()
        time.sleep(1.0)
        lab.net.freeze(old.name, True)
        try:
            # "pausing": PAUSE waits on the connections stuck in the frozen node; new statements queue
            paused = wait_for("the pool paused", lambda: time.monotonic() if pool_record(others).get(
                "state") in ("pausing", "paused") else None, 10, interval=0.02)
            new = wait_for("another writable primary", lambda: next(
                (n for n in others if n.health("/primary") == 200), None), TTL * 4)
            wait_for("the pool on the new primary", lambda: pool_record(others).get("target") == new.name
                     and pool_record(others).get("state") == "active" or None, 20)
            with psycopg.connect(pooled.bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
                row = conn.execute("SELECT NOT pg_is_in_recovery(), inet_server_port()").fetchone()
            assert row == (True, new.pg_port), row
        finally:
            lab.net.freeze(old.name, False)
        time.sleep(3.0)  # the thawed node is fenced; anything it still held is answered or refused now
        tally = load.stop()
        assert missing_on(new.dsn(), sent_since(tally, paused)) == [], "the frozen primary acknowledged a pooled write"
        if lab.sync:
            assert missing_on(new.dsn(), tally.acked) == [], "an acknowledged write was lost"
        assert load.idle_survived()
    finally:
        load.halt.set()
        pooled.stop()


def pool_record(nodes: list[Node]) -> dict[str, object]:
    """bouncer1's record under poolers/, as the first node that answers shows it."""
    for n in nodes:
        status, body, _ = http_request("GET", n.api + "/cluster", timeout=2.0)
        if status == 200:
            return dict(((body or {}).get("poolers") or {}).get("bouncer1") or {})
    return {}
