"""docker-compose.yml run for real: a private dockerd, images made from Debian packages (no
registry here), the deployment as a user starts it, then the faults a user meets first. Skipped,
with the reason, where no container engine can be started."""

from __future__ import annotations

import csv
import json
import io
import os
import time
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest

from pgha.testing import wait_for
from pgha.testing.compose import Deployment, EngineUnavailable, host_network_state, new_engine, why_not_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TTL = 10  # bootstrap.dcs.ttl in configs/pg*.yml
NODES = ("pg1", "pg2", "pg3")
PASSWORD = "change-me"  # the compose file's default superuser password


def dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=2"


def write(value: int) -> str:
    with psycopg.connect(dsn(5000), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS drill (v int)")
        conn.execute("INSERT INTO drill VALUES (%s)", (value,))
        row = conn.execute("SELECT host(inet_server_addr())").fetchone()
        assert row is not None
        return str(row[0])


def try_write(value: int) -> str | None:
    try:
        return write(value)
    except psycopg.Error:
        return None


def read_addresses(n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        with psycopg.connect(dsn(5001), autocommit=True) as conn:
            row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
            assert row is not None and row[1] is True, "a read went to the primary"
            seen.add(str(row[0]))
    return seen


def haproxy_status(backend: str, server: str) -> str:
    with urllib.request.urlopen("http://127.0.0.1:7000/;csv", timeout=2) as r:
        text = r.read().decode()
    for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
        if row["pxname"] == backend and row["svname"] == server:
            return row["status"]
    return "absent"


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    problem = why_not_available()
    if problem:
        pytest.skip(problem)
    before = host_network_state()
    engine = new_engine()
    try:
        engine.start()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    d = Deployment(engine, f"pghat{os.getpid()}")
    try:
        engine.build_base()
        engine.build_standins()
        engine.build_project()
        print("\n".join(engine.log))
        d.compose("up", "-d", "--no-build")
        yield d
    except BaseException:
        print(d.logs(), engine.dockerd_log())
        raise
    finally:
        d.compose("down", "-v", "--timeout", "5", check=False)
        engine.stop()
        after = host_network_state()
        assert after == before, "the container engine changed the host's networking"
        assert engine.mounts() == [] and not engine.base.exists(), "the container engine left files or mounts"


def members(d: Deployment) -> dict[str, dict[str, object]]:
    return {str(m["Member"]): m for m in d.members()}


def healthy(d: Deployment) -> str | None:
    """The leader's name once there is one leader and two streaming replicas."""
    ms = members(d)
    leaders = [n for n, m in ms.items() if m["Role"] == "Leader" and m["State"] == "running"]
    streaming = [n for n, m in ms.items() if m["Role"] in ("Replica", "Sync Standby") and m["State"] == "streaming"]
    return leaders[0] if len(ms) == 3 and len(leaders) == 1 and len(streaming) == 2 else None


def leader_of(d: Deployment) -> str:
    return wait_for("one leader and two streaming replicas", lambda: healthy(d), 180, interval=1)


def writes_resume_within(budget: float, t0: float, start: int) -> float:
    i = start
    while True:
        i += 1
        if try_write(i) is not None:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < budget + 20, "writes never resumed"
        time.sleep(0.1)


def test_cluster_comes_up_with_one_leader_two_streaming_replicas_and_both_ports_routed(
        deployment: Deployment) -> None:
    d = deployment
    leader = leader_of(d)
    assert wait_for("a write through port 5000", lambda: try_write(1), 60) == d.address(leader)
    replicas = {d.address(n) for n in NODES if n != leader}
    wait_for("both replicas routed on 5001",
             lambda: all(haproxy_status("replicas", n) == "UP" for n in NODES if n != leader) or None, 30)
    assert read_addresses(8) == replicas, "reads are not spread over both replicas"


def test_pgha_list_works_inside_a_node_container(deployment: Deployment) -> None:
    out = deployment.exec("pg2", "pgha", "list", "-c", "/etc/pgha/node.yml").stdout
    assert "Leader" in out and all(n in out for n in NODES)
    out = deployment.compose("exec", "-T", "pg3", "pgha", "list", "-c", "/etc/pgha/node.yml").stdout
    assert "Leader" in out and all(n in out for n in NODES)


def pooled_server() -> tuple[str, bool] | None:
    try:
        with psycopg.connect(dsn(6432), autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
            return (str(row[0]), bool(row[1])) if row else None
    except psycopg.Error:
        return None


def test_pooler_service_routes_pgbouncer_to_the_primary(deployment: Deployment) -> None:
    d = deployment
    leader = leader_of(d)
    try:
        server = wait_for("a statement through PgBouncer on 6432", pooled_server, 60)
    except TimeoutError:
        print(d.compose("logs", "pooler", check=False).stdout)
        raise
    assert server == (d.address(leader), False)
    body = json.loads(urllib.request.urlopen(f"http://{d.address(leader)}:8008/cluster", timeout=5).read())
    assert body["poolers"]["pooler1"]["target"] == leader


def test_one_etcd_member_killed_causes_no_failover(deployment: Deployment) -> None:
    d = deployment
    leader = leader_of(d)
    d.engine.docker("kill", d.container("etcd2"))
    try:
        end = time.monotonic() + TTL + 2
        i = 100
        while time.monotonic() < end:
            i += 1
            assert try_write(i) == d.address(leader), "writes stopped or moved with one etcd member down"
            time.sleep(0.2)
        assert healthy(d) == leader
    finally:
        d.engine.docker("start", d.container("etcd2"))


def test_leader_killed_writes_resume_within_ttl_and_the_old_leader_rejoins(deployment: Deployment) -> None:
    d = deployment
    old = leader_of(d)
    try_write(200)
    d.engine.docker("kill", d.container(old))
    t0 = time.monotonic()
    try:
        gap = writes_resume_within(TTL + 2, t0, 200)
        print(f"docker kill {old}: writes resumed after {gap:.1f} s")
        assert gap <= TTL + 2
        new = leader_of_two(d, old)
    finally:
        d.engine.docker("start", d.container(old))  # the next scenarios start from three nodes
    assert leader_of(d) == new
    # A killed leader starts as the new one's replica first: its WAL ended before the fork (the
    # writes above all reached a replica), or pg_rewind brings it back
    deadline = time.monotonic() + 60
    logs = ""
    while time.monotonic() < deadline and not ("rejoined without a rewind" in logs or "pg_rewind" in logs):
        time.sleep(1)
        out = d.engine.docker("logs", d.container(old))
        logs = out.stderr + out.stdout
    assert "rejoined without a rewind" in logs or "pg_rewind" in logs, "the old leader did not rejoin"


def leader_of_two(d: Deployment, gone: str) -> str:
    def one() -> str | None:
        ms = members(d)
        leaders = [n for n, m in ms.items() if m["Role"] == "Leader" and m["State"] == "running" and n != gone]
        return leaders[0] if len(leaders) == 1 else None
    return wait_for("a new leader", one, 60, interval=0.5)


def test_leader_stopped_hands_over_cleanly_with_writes_back_within_three_seconds(
        deployment: Deployment) -> None:
    d = deployment
    old = leader_of(d)
    try_write(300)
    t0 = time.monotonic()  # from the start of the stop: the hand-over happens while it runs
    d.engine.docker("stop", "-t", "30", d.container(old))
    try:
        gap = writes_resume_within(3, t0, 300)
        print(f"docker stop {old}: writes back after {gap:.1f} s")
        assert gap <= 3
    finally:
        d.engine.docker("start", d.container(old))
    leader_of(d)


def test_haproxy_restarted_with_a_node_down_routes_to_it_again_on_its_new_address(
        deployment: Deployment) -> None:
    d = deployment
    leader = leader_of(d)
    node = next(n for n in NODES if n != leader)
    first = d.address(node)
    d.engine.docker("stop", "-t", "10", d.container(node))
    d.engine.docker("restart", "-t", "2", d.container("haproxy"))
    # Other containers take free addresses, the stopped node's among them, so it comes back on a
    # new one (whether the engine hands out the lowest free address or the next in turn).
    squatters = [f"{d.project}_squatter{i}" for i in range(3)]
    try:
        for name in squatters:
            d.engine.docker("run", "-d", "--name", name, "--network", f"{d.project}_pgha",
                            "pgha-test/haproxy:standin", "sleep", "600")
            if d.engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                               name).stdout.strip() == first:
                break
        d.engine.docker("start", d.container(node))
        second = d.address(node)
        assert second != first
        wait_for(f"{node} routed again on {second}", lambda: haproxy_status("replicas", node) == "UP" or None, 90)
        wait_for(f"a read served by {node}", lambda: second in read_addresses(6) or None, 30)
        assert try_write(400) == d.address(leader)
    finally:
        for name in squatters:
            d.engine.docker("rm", "-f", name, check=False)
