"""The lease rule on real processes: a primary cut off from etcd stops taking writes once it has
failed to renew for retry_timeout (not shortly before its lease expires), and maintenance mode
rides out an etcd outage without stopping anything."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from collections.abc import Callable

import pytest

from pgha.testing import FAST, LocalCluster, http_request, wait_for
from tests.conftest import sql
from tests.direct import writing_to

pytestmark = pytest.mark.slow
SLOW = {"ttl": 20, "loop_wait": 2, "retry_timeout": 3}


def writable(c: LocalCluster, name: str) -> bool:
    try:
        return sql(c.node(name).dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001
        return False


def test_primary_cut_off_from_etcd_stops_writes_after_retry_timeout(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=SLOW)
    c.start()
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE direct (at timestamptz)")
    etcd = c.etcd.members[0].proc
    assert etcd is not None
    with writing_to(leader) as w:
        etcd.send_signal(signal.SIGSTOP)
        cut = time.monotonic()
        try:
            wait_for("the cut-off primary read-only", lambda: not writable(c, leader.name), 25)
            last = max(w.acks)
        finally:
            etcd.send_signal(signal.SIGCONT)
    # The last renewal came at most loop_wait before the cut; the agent demotes retry_timeout
    # after the renewal it missed. Before this rule it kept writing until ttl - retry_timeout.
    assert last - cut < SLOW["loop_wait"] + SLOW["retry_timeout"] + 2.5, f"wrote for {last - cut:.1f} s"
    # The first failed renewal ends when the lease stops counting as held (its deadline is cut to
    # that instant). The demotion follows at once: the loop's own etcd calls (the leader status it
    # publishes under writes, its member record) may not outlast that instant either, or they
    # hold the demotion back by up to twice retry_timeout.
    stamps = agent_log_times(leader.log_text(), "lease renewal failed", "demoting")
    assert stamps["demoting"] - stamps["lease renewal failed"] < 1.5, stamps
    wait_for("a primary again", lambda: len(c.primaries()) == 1, 40)


def agent_log_times(text: str, *events: str) -> dict[str, float]:
    """When each event was first logged, in seconds (from the agent log's timestamps)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        for ev in events:
            if ev in line and ev not in found:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                found[ev] = stamp.timestamp()
    assert set(found) == set(events), f"missing from the agent log: {set(events) - set(found)}"
    return found


def test_paused_primary_rides_out_an_etcd_outage(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE direct (at timestamptz)")
    assert http_request("PATCH", leader.api + "/config", {"pause": True})[0] == 200
    wait_for("every agent paused", lambda: all((n.status() or {}).get("pause") for n in c.nodes), 10)
    etcd = c.etcd.members[0].proc
    assert etcd is not None
    with writing_to(leader) as w:
        etcd.send_signal(signal.SIGSTOP)
        try:
            time.sleep(2 * FAST["ttl"])
            before = len(w.acks)
            time.sleep(1)
            assert len(w.acks) > before, "the paused primary stopped taking writes"
        finally:
            etcd.send_signal(signal.SIGCONT)
            back = time.monotonic()
    assert writable(c, leader.name) and "stopping postgres now" not in leader.log_text()
    # Every lease expired, the leader key with them. Still paused, the only writable primary takes
    # the key back, so that clients find it again (before: /primary 503 until the pause ended).
    wait_for("the paused primary routed again", lambda: leader.health("/primary") == 200, 10)
    print(f"paused primary routed again {time.monotonic() - back:.1f} s after etcd came back")
    assert c.primaries() == [leader] and writable(c, leader.name)
    assert "taking the leader key back as the only writable primary" in leader.log_text()
    assert (leader.status() or {}).get("pause") is True
    assert http_request("PATCH", leader.api + "/config", {"pause": False})[0] == 200
    wait_for("one primary", lambda: len(c.primaries()) == 1, 30)


def test_paused_cluster_with_two_writable_primaries_after_an_outage_routes_neither(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    other = next(n for n in c.nodes if n is not leader)
    assert http_request("PATCH", leader.api + "/config", {"pause": True})[0] == 200
    wait_for("every agent paused", lambda: all((n.status() or {}).get("pause") for n in c.nodes), 10)
    sql(other.dsn(), "SELECT pg_promote()")  # the operator makes a second primary by hand
    wait_for(f"{other.name} writable", lambda: writable(c, other.name), 20)
    wait_for(f"{other.name}'s record says primary", lambda: (other.status() or {}).get("role") == "primary", 10)
    assert c.primaries() == [leader]  # the key holder only
    etcd = c.etcd.members[0].proc
    assert etcd is not None
    etcd.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2 * FAST["ttl"])
    finally:
        etcd.send_signal(signal.SIGCONT)
    # Both run writable and neither holds the key: pgha does not pick one, it says why.
    wait_for("both notes", lambda: all("will not pick one" in (n.status() or {}).get("note", "") for n in c.nodes), 15)
    end = time.monotonic() + 3 * FAST["loop_wait"] + 1
    while time.monotonic() < end:
        assert c.primaries() == [], "pgha picked one of two writable primaries"
        time.sleep(0.2)
    assert writable(c, leader.name) and writable(c, other.name)  # and changed neither


def test_agent_restarted_within_ttl_keeps_leading_without_a_failover(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    other = next(n for n in c.nodes if n is not leader)
    timeline = (leader.status() or {})["timeline"]
    assert leader.proc is not None
    leader.proc.kill()  # the agent only; its Postgres keeps running
    leader.proc.wait()
    leader.start()
    end = time.monotonic() + 2.5 * FAST["ttl"]
    while time.monotonic() < end:  # the old lease expires meanwhile: nobody else may take over
        assert other.health("/primary") == 503, "a failover followed an agent restart"
        time.sleep(0.2)
    wait_for("the restarted agent leading", lambda: leader.health("/primary") == 200, 10)
    assert (leader.status() or {})["timeline"] == timeline
    assert "took over the leader key" in leader.log_text()


def test_ttl_changes_at_runtime_keep_the_primary_in_both_directions(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE direct (at timestamptz)")
    with writing_to(leader) as w:
        for change in ({"ttl": 30, "retry_timeout": 10}, {"ttl": 6, "retry_timeout": 2}):
            start = len(w.acks)
            assert http_request("PATCH", leader.api + "/config", change)[0] == 200
            time.sleep(2 * FAST["ttl"] + 2)  # past the expiry of every lease granted before the change
            assert leader.health("/primary") == 200, f"no primary after {change}"
            acks = w.acks[start:]
            gaps = [b - a for a, b in zip(acks, acks[1:])]
            assert acks and time.monotonic() - acks[-1] < 1 and max(gaps) < 3, f"write gap {max(gaps):.1f} s"
    assert c.leader().name == leader.name
    text = leader.log_text()
    assert text.count("moving to a new lease") >= 2 and "took over the leader key" in text
