"""Hardening on real processes: no password readable by other local users or in Postgres' log,
and no valid-but-bad request (far schedules, huge or untyped config values, connection floods,
malformed bodies) takes the primary offline. Each scenario failed before its fix."""

from __future__ import annotations

import base64
import json
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgha.testing import FAST, LocalCluster, Node, http_request, wait_for

pytestmark = pytest.mark.slow
FAR = "9999-12-31T23:59:59-23:59"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    base = Path(tempfile.mkdtemp(prefix="pgha-test-hardening-"))
    c = LocalCluster(base, nodes=2, dcs={**FAST, "postgresql": {"parameters": {"log_statement": "all"}}})
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def call(node: Node, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    status, payload, _ = http_request(method, node.api + path, body, raw=raw, timeout=30,
                                      headers={"Content-Type": "application/json"})
    return status, payload


def test_passwords_never_reach_other_users_or_the_postgres_log(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    replica = next(n for n in cluster.nodes if n is not leader)
    wait_for("the replica streaming", lambda: replica.health("/replica") == 200, 30)
    for n in cluster.nodes:
        for path in (Path(f"{n.data_dir}.pgpass"), Path(f"{n.data_dir}.postgres.log")):
            if path.exists():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    log = Path(f"{leader.data_dir}.postgres.log").read_text(errors="replace")
    assert "statement: " in log  # log_statement = all is in force ...
    assert "replsecret" not in log and "supersecret" not in log  # ... yet no password was logged
    assert Path(f"{replica.data_dir}.pgpass").exists()


def test_far_schedules_are_refused_and_a_stored_one_breaks_no_view(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    code, body = call(leader, "POST", "/restart", {"schedule": FAR})
    assert code == 400 and "schedule" in body["error"]
    code, body = call(leader, "POST", "/switchover", {"leader": leader.name, "scheduled_at": FAR})
    assert code == 400 and "scheduled_at" in body["error"]
    # a request no calendar holds, written straight into etcd: never due, shown, cancellable
    key = base64.b64encode(b"/pgha/demo/failover").decode()
    value = base64.b64encode(json.dumps({"leader": leader.name, "candidate": "", "scheduled_at": 1e300}).encode())
    urllib.request.urlopen(urllib.request.Request(
        cluster.etcd.members[0].client_url + "/v3/kv/put", method="POST",
        data=json.dumps({"key": key, "value": value.decode()}).encode()), timeout=5).read()
    for n in cluster.nodes:
        assert call(n, "GET", "/cluster")[0] == 200
    assert leader.health("/primary") == 200
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(leader.config_path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert call(leader, "DELETE", "/switchover")[0] == 200
    assert cluster.leader().name == leader.name


def test_oversized_or_untyped_config_changes_are_refused_and_change_nothing(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    before = call(leader, "GET", "/config")[1]
    code, body = call(leader, "PATCH", "/config", {"postgresql": {"parameters": {"application_name": "x" * 900_000}}})
    assert code == 413 and "error" in body
    big = {f"custom.p{i}": "x" * 4000 for i in range(20)}
    assert call(leader, "PATCH", "/config", {"postgresql": {"parameters": big}})[0] == 413
    for bad in ({"pause": "false"}, {"pause": "yes"}, {"ttl": "30"}, {"loop_wait": 0.001},
                {"postgresql": {"parameters": {"zz.x = 1\ncluster_name": "evil"}}}):
        code, body = call(leader, "PATCH", "/config", bad)
        assert code == 400 and "error" in body, (bad, code, body)
    code, body = call(leader, "PATCH", "/config", {"postgresql": {"parameters": {"work_mem": "banana"}}})
    assert code == 400 and "work_mem" in body["error"] and "not a number" in body["error"]
    assert call(leader, "GET", "/config")[1] == before
    code, body = call(leader, "PATCH", "/config", {"postgresql": {"parameters": {"work_mem": "6MB"}}})
    assert code == 200 and body["postgresql"]["parameters"]["work_mem"] == "6MB"
    assert cluster.leader().name == leader.name
    assert "demoting" not in leader.log_text()


def test_malformed_bodies_get_json_errors_never_plain_text_or_500(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    cases = [(b"\xff\xfe{}", 400), (b"[" * 100_000, 400), (b"{" + b" " * 300_000 + b"}", 413)]
    for raw, want in cases:
        code, body = call(leader, "PATCH", "/config", raw=raw)
        assert code == want and isinstance(body, dict) and "error" in body, (raw[:10], code, body)
    code, body = call(leader, "POST", "/restart", {"timeout": -1})
    assert code == 400 and "timeout" in body["error"]
    code, body = call(leader, "GET", "/no-such-path")
    assert code == 404 and isinstance(body, dict) and "error" in body


def test_idle_connection_flood_never_keeps_health_checks_out(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=1)
    c.nodes[0].nofile = 1024  # as many distributions set it
    c.start()
    leader = c.leader()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    socks: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", leader.api_port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        for _ in range(10):
            t0 = time.monotonic()
            assert leader.health("/primary") == 200
            assert time.monotonic() - t0 < 2
            time.sleep(0.3)
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    text = leader.log_text()
    assert "restarting it in place" not in text and "Traceback" not in text
    assert "closed the longest idle" in text


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=3), max_leaves=10)
FIELDS = ["leader", "candidate", "scheduled_at", "restart_pending", "role", "schedule", "timeout", "force",
          "pause", "postgresql", "maximum_lag_on_failover", "synchronous_mode"]
bodies = st.one_of(json_values, st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values,
                                                 max_size=4))
WRITES = [("POST", "/switchover"), ("POST", "/failover"), ("POST", "/restart"), ("POST", "/reinitialize"),
          ("POST", "/reload"), ("PATCH", "/config"), ("PUT", "/config"), ("DELETE", "/switchover"),
          ("DELETE", "/restart")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(WRITES), body=bodies)
def test_random_json_to_every_write_endpoint_gets_4xx_or_success(cluster: LocalCluster, endpoint: tuple[str, str],
                                                                  body: Any) -> None:
    leader = cluster.leader()
    method, path = endpoint
    if method == "PUT":
        body = {"unknown": body}  # a PUT of a valid config would replace the cluster's
    code, reply = call(leader, method, path, body)
    assert code < 500, (method, path, body, code, reply)
    if code >= 400:
        assert isinstance(reply, dict) and "error" in reply


def test_after_the_fuzz_one_primary_and_no_traceback(cluster: LocalCluster) -> None:
    wait_for("one primary", lambda: len(cluster.primaries()) == 1, 30)
    for n in cluster.nodes:
        assert "Traceback" not in n.log_text()
