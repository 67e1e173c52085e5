"""The REST API through real HTTP on a real cluster: views, management, every refusal, security."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pgha.testing import LocalCluster, Node, http_request, wait_for
from tests.certs import make_certs
from tests.conftest import sql

pytestmark = pytest.mark.slow


def call(node: Node, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    status, payload, _ = http_request(method, node.api + path, body, **kw)
    return status, payload


def in_minutes(n: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=n)).isoformat()


def test_views_config_and_metrics(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    wait_for("three members in the leader's view", lambda: len(call(leader, "GET", "/cluster")[1]["members"]) == 3
             and all(m["state"] in ("running", "streaming") for m in call(leader, "GET", "/cluster")[1]["members"]), 10)
    status, cluster = call(leader, "GET", "/cluster")
    roles = {m["name"]: m["role"] for m in cluster["members"]}
    assert status == 200 and roles[leader.name] == "leader" and sorted(roles.values()) == ["leader", "replica", "replica"]
    assert all("lag" in m for m in cluster["members"] if m["role"] == "replica")
    assert http_request("HEAD", leader.api + "/primary")[:2] == (200, None)
    assert http_request("OPTIONS", leader.api + "/primary")[0] == 200
    assert http_request("OPTIONS", leader.api + "/replica")[0] == 503
    st = call(leader, "GET", "/patroni")[1]
    assert st["role"] == "primary" and len(st["replication"]) == 2
    replica_status = call(c.streaming_replicas()[0], "GET", "/status")[1]
    assert {"received_location", "replayed_location", "replayed_timestamp"} <= set(replica_status["xlog"])
    code, cfg, headers = http_request("GET", leader.api + "/config")
    assert code == 200 and cfg["ttl"] == 6 and headers["ETag"].strip('"').isdigit()
    metrics = http_request("GET", leader.api + "/metrics")[1]
    assert f'pgha_primary{{name="{leader.name}",scope="demo"}} 1.0' in metrics
    for series in ("pgha_postgres_timeline", "pgha_replication_lag_bytes", "pgha_pending_restart", "pgha_paused",
                   "pgha_dcs_last_seen_timestamp", "pgha_lease_renewals_total", "pgha_promotions_total"):
        assert series in metrics
    for n in c.nodes:  # credentials stay out of every view and log
        for text in (str(call(n, "GET", "/status")[1]), str(call(n, "GET", "/config")[1]), n.log_text(),
                     (n.dir / "data.postgres.log").read_text()):
            assert "supersecret" not in text and "replsecret" not in text


def test_config_changes_are_validated_compare_and_set_and_applied(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    before = call(leader, "GET", "/config")[1]
    assert call(leader, "PATCH", "/config", raw=b"{not json")[0] == 400
    assert call(leader, "PATCH", "/config", [1, 2])[0] == 400
    code, err = call(leader, "PATCH", "/config", {"ttl": 5, "loop_wait": 2})
    assert code == 400 and "loop_wait + 2*retry_timeout" in err["error"]
    code, err = call(leader, "PATCH", "/config", {"ttll": 30})
    assert code == 400 and "ttll: unknown key" in err["error"]
    assert call(leader, "PUT", "/config", {"ttl": "long"})[0] == 400
    assert call(leader, "GET", "/config")[1] == before  # nothing stored by a refused change
    _, _, headers = http_request("GET", leader.api + "/config")
    etag = headers["ETag"]
    code, new = call(leader, "PATCH", "/config", {"maximum_lag_on_failover": 2097152,
                                                   "postgresql": {"parameters": {"work_mem": "7MB"}}})
    assert code == 200 and new["maximum_lag_on_failover"] == 2097152
    assert call(leader, "PATCH", "/config", {"check_timeline": True}, headers={"If-Match": etag})[0] == 409
    code, new = call(leader, "PATCH", "/config", {"maximum_lag_on_failover": None})
    assert code == 200 and "maximum_lag_on_failover" not in new
    for n in c.nodes:
        wait_for(f"work_mem applied on {n.name}", lambda n=n: sql(n.dsn(), "SHOW work_mem")[0][0] == "7MB", 15)
    # a parameter that needs a restart is marked pending, and a pending-only restart clears it
    assert call(leader, "POST", "/restart", {"restart_pending": True})[0] == 412
    # (a postmaster-context parameter that standbys do not need to match)
    assert call(leader, "PATCH", "/config", {"postgresql": {"parameters": {"max_files_per_process": 900}}})[0] == 200
    wait_for("pending restart", lambda: call(leader, "GET", "/status")[1]["pending_restart"], 15)
    assert call(leader, "POST", "/restart", {"restart_pending": True})[0] == 200
    assert sql(leader.dsn(), "SHOW max_files_per_process")[0][0] == "900"
    wait_for("no pending restart", lambda: not call(leader, "GET", "/status")[1]["pending_restart"], 15)
    assert c.leader().name == leader.name


def test_switchover_scheduling_and_refusals(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(tags={"n3": {"nofailover": True}})
    c.start()
    leader = c.leader()
    target = next(n for n in c.nodes if n is not leader and n.name != "n3") if leader.name != "n3" else c.nodes[0]
    assert call(leader, "POST", "/switchover", {})[0] == 400
    assert call(leader, "POST", "/switchover", {"leader": leader.name, "colour": "red"})[0] == 400
    assert call(leader, "POST", "/switchover", {"leader": 5})[0] == 400
    code, err = call(leader, "POST", "/switchover", {"leader": "nobody"})
    assert code == 412 and "leader name does not match" in err["error"]
    code, err = call(leader, "POST", "/switchover", {"leader": leader.name, "candidate": "ghost"})
    assert code == 412 and "not a member" in err["error"]
    if leader.name != "n3":
        code, err = call(leader, "POST", "/switchover", {"leader": leader.name, "candidate": "n3"})
        assert code == 412 and "nofailover" in err["error"]
    assert call(leader, "POST", "/switchover", {"leader": leader.name, "scheduled_at": "tomorrow"})[0] == 400
    assert call(leader, "POST", "/switchover", {"leader": leader.name, "scheduled_at": "2020-01-01T00:00:00+00:00"})[0] == 400
    code, _ = call(leader, "POST", "/switchover", {"leader": leader.name, "candidate": target.name,
                                                   "scheduled_at": in_minutes(30)})
    assert code == 202
    wait_for("scheduled switchover in /cluster", lambda: "scheduled_switchover" in call(leader, "GET", "/cluster")[1], 10)
    assert call(leader, "POST", "/switchover", {"leader": leader.name})[0] == 409
    assert call(leader, "DELETE", "/switchover")[0] == 200
    assert call(leader, "DELETE", "/switchover")[0] == 404
    code, body = call(leader, "POST", "/switchover", {"leader": leader.name, "candidate": target.name})
    assert code == 200 and body["leader"] == target.name
    assert c.leader().name == target.name
    wait_for("old leader streaming", lambda: leader.health("/replica") == 200, 30)
    history = call(target, "GET", "/history")[1]
    assert history[-1][2] == f"switchover from {leader.name}" and history[-1][4] == target.name
    assert call(target, "POST", "/failover", {})[0] == 400
    assert call(target, "POST", "/failover", {"candidate": target.name})[0] == 412
    back = next(n for n in c.nodes if n.name not in (target.name, "n3"))
    wait_for(f"{back.name} streaming", lambda: back.health("/replica") == 200, 30)
    code, body = call(target, "POST", "/failover", {"candidate": back.name})
    assert code == 200 and body["leader"] == back.name, body


def test_restart_reload_and_reinitialize(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    replica = c.streaming_replicas()[0]
    assert call(leader, "POST", "/restart", {"role": "replica"})[0] == 412
    assert call(leader, "POST", "/restart", {"timeout": "soon"})[0] == 400
    assert call(leader, "POST", "/restart", {"schedule": "later"})[0] == 400
    assert call(leader, "DELETE", "/restart")[0] == 404
    assert call(replica, "POST", "/restart", {"schedule": in_minutes(30)})[0] == 202
    assert "scheduled_restart" in call(replica, "GET", "/status")[1]
    assert call(replica, "DELETE", "/restart")[0] == 200
    pid = leader.postmaster_pid()
    code, body = call(leader, "POST", "/restart", {"role": "primary"})
    assert code == 200, body
    assert leader.postmaster_pid() != pid and c.leader().name == leader.name
    assert call(leader, "POST", "/reload")[0] == 200
    assert call(leader, "POST", "/reload", {"x": 1})[0] == 400
    code, err = call(leader, "POST", "/reinitialize", {})
    assert code == 412 and "leader" in err["error"]
    sql(leader.dsn(), "CREATE TABLE after_reinit AS SELECT 1 AS x")
    old_pid = replica.postmaster_pid()
    assert call(replica, "POST", "/reinitialize", {"force": True})[0] == 200
    wait_for("replica re-cloned and streaming", lambda: replica.postmaster_pid() not in (None, old_pid)
             and replica.health("/replica") == 200, 60)
    assert sql(replica.dsn(), "SELECT x FROM after_reinit") == [(1,)]
    assert "reinitialized from" in replica.log_text()


def _basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def test_write_endpoints_require_credentials_and_an_allowed_address(make_cluster: Callable[..., LocalCluster]) -> None:
    auth = {"authentication": {"username": "admin", "password": "s3cret-api"}}
    c = make_cluster(restapi={"n1": auth, "n2": auth, "n3": {"allowlist": ["192.0.2.0/24"]}})
    c.start()
    n1, n3 = c.node("n1"), c.node("n3")
    for node in (n1, n3):
        assert call(node, "GET", "/status")[0] == 200  # reads stay open
        assert call(node, "OPTIONS", "/")[0] in (200, 503)
    code, body = call(n1, "POST", "/reload")
    assert code == 401 and body["error"] == "authentication required"
    assert call(n1, "POST", "/reload", headers=_basic("admin", "wrong"))[0] == 401
    assert call(n1, "POST", "/reload", headers=_basic("root", "s3cret-api"))[0] == 401
    assert call(n1, "PATCH", "/config", {"ttl": 3}, headers=_basic("admin", "s3cret-api"))[0] == 400
    assert call(n1, "POST", "/reload", headers=_basic("admin", "s3cret-api"))[0] == 200
    code, body = call(n3, "POST", "/reload")
    assert code == 403 and "allowlist" in body["error"]
    assert "s3cret-api" not in n1.log_text() and "s3cret-api" not in str(call(n1, "GET", "/status")[1])


def test_api_over_tls_requires_a_client_certificate(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=1)
    certs = make_certs(c.base)
    c.nodes[0].config["restapi"].update(certfile=str(certs["server.crt"]), keyfile=str(certs["server.key"]),
                                        cafile=str(certs["ca.crt"]), verify_client="required")
    c.start(wait=False)
    url = f"https://127.0.0.1:{c.nodes[0].api_port}/primary"
    with_cert = ssl.create_default_context(cafile=str(certs["ca.crt"]))
    with_cert.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))
    without_cert = ssl.create_default_context(cafile=str(certs["ca.crt"]))

    def status(ctx: ssl.SSLContext) -> int:
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert wait_for("primary over TLS", lambda: status(with_cert) == 200, 60)
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        status(without_cert)
    assert c.nodes[0].health("/primary") == 0  # plain HTTP is not served
