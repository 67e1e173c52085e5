"""Record the reference REST bodies of a real Patroni 4.1.5 cluster, that pgha's bodies must match
key for key (``tests/patroni/test_rest_shapes.py``). Re-record with one command:

    ./dev record-patroni-bodies

It runs a 3-node Patroni cluster in synchronous mode on a fresh etcd, switches over once (so that
``/history`` has a row), then takes the bodies of a primary, a sync standby and an asynchronous
replica, then of the same cluster with a pending restart, with a scheduled switchover and paused.
Output: ``tests/patroni/bodies.json``: ``{case: {path: {"status": code, "body": ...}}}``; for
``/metrics``, the body is ``{metric name: sorted label names}``.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pgha.testing import EtcdCluster, http_request, wait_for
from pgha.testing.patroni import VERSION, PatroniCluster
from tests.patroni.shapes import metric_shapes

OUT = Path(__file__).with_name("bodies.json")


def get(api: str, path: str) -> dict[str, Any]:
    if path == "/metrics":
        with urllib.request.urlopen(api + path, timeout=5) as r:
            return {"status": r.status, "body": metric_shapes(r.read().decode())}
    status, body, _ = http_request("GET", api + path, timeout=5)
    return {"status": status, "body": body}


def role_of(api: str) -> str:
    return str(http_request("GET", api + "/patroni", timeout=5)[1]["role"])


def record(paths: dict[str, list[str]], apis: dict[str, str]) -> dict[str, Any]:
    """``paths``: per node key in ``apis``, the paths to take from it."""
    return {f"{who}:{path}": get(apis[who], path) for who, ps in paths.items() for path in ps}


def healthy(apis: dict[str, str]) -> bool:
    codes = [http_request("GET", api + "/primary", timeout=2)[0] for api in apis.values()]
    replicas = [http_request("GET", api + "/replica", timeout=2)[0] for api in apis.values()]
    return codes.count(200) == 1 and replicas.count(200) == len(apis) - 1


def take_bodies(apis: dict[str, str]) -> dict[str, Any]:
    """The scenario, run the same way on Patroni and on pgha: ``apis`` maps each member of a
    healthy 3-node cluster in synchronous mode to its REST API's URL."""
    first = next(name for name, api in apis.items() if role_of(api) == "primary")

    def sync_standby() -> str | None:
        members = http_request("GET", apis[first] + "/cluster", timeout=5)[1]["members"]
        return next((m["name"] for m in members if m["role"] == "sync_standby"), None)

    target = wait_for("a sync standby", sync_standby, 60, interval=0.5)
    status, body, _ = http_request("POST", apis[first] + "/switchover",
                                   {"leader": first, "candidate": target}, timeout=60)
    assert status == 200, (status, body)
    wait_for("the switchover's new primary",
             lambda: role_of(apis[target]) == "primary" and healthy(apis), 90, interval=0.5)

    def by_role() -> dict[str, str] | None:
        members = http_request("GET", apis[target] + "/cluster", timeout=5)[1]["members"]
        roles = {m["role"]: m["name"] for m in members if m.get("state") in ("running", "streaming")}
        if not {"leader", "sync_standby", "replica"} <= roles.keys():
            return None
        # the standby's own view agrees (each node reads the sync key on its own loop)
        return roles if http_request("GET", apis[roles["sync_standby"]] + "/sync")[0] == 200 else None

    roles = wait_for("a leader, a sync standby and a replica", by_role, 60, interval=0.5)
    who = {"primary": apis[roles["leader"]], "sync_standby": apis[roles["sync_standby"]],
           "replica": apis[roles["replica"]]}
    bodies: dict[str, Any] = {}
    bodies["running"] = record({
        "primary": ["/patroni", "/primary", "/health", "/liveness", "/readiness", "/read-write", "/replica",
                    "/cluster", "/history", "/config", "/metrics"],
        "sync_standby": ["/patroni", "/sync", "/replica", "/readiness", "/primary"],
        "replica": ["/patroni", "/replica", "/async", "/readiness", "/metrics"]}, who)

    status, body, _ = http_request("PATCH", who["primary"] + "/config",
                                   {"postgresql": {"parameters": {"max_files_per_process": 2000}}})
    assert status == 200, (status, body)
    wait_for("a pending restart", lambda: http_request("GET", who["replica"] + "/patroni")[1]
             .get("pending_restart") and http_request("GET", who["primary"] + "/patroni")[1]
             .get("pending_restart"), 60, interval=0.5)
    bodies["pending_restart"] = record({"primary": ["/patroni", "/cluster"], "replica": ["/patroni"]}, who)

    at = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    status, body, _ = http_request("POST", who["primary"] + "/switchover",
                                   {"leader": roles["leader"], "scheduled_at": at})
    assert status == 202, (status, body)
    wait_for("the scheduled switchover in /cluster",
             lambda: "scheduled_switchover" in http_request("GET", who["primary"] + "/cluster")[1], 10)
    bodies["scheduled_switchover"] = record({"primary": ["/patroni", "/cluster"]}, who)
    http_request("DELETE", who["primary"] + "/switchover")

    status, body, _ = http_request("PATCH", who["primary"] + "/config", {"pause": True})
    assert status == 200, (status, body)
    wait_for("pause", lambda: http_request("GET", who["replica"] + "/patroni")[1].get("pause"), 30)
    time.sleep(3)
    bodies["paused"] = record({"primary": ["/patroni", "/cluster", "/primary"],
                               "replica": ["/patroni", "/replica"]}, who)
    return bodies


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="pgha-patroni-bodies-"))
    base.chmod(0o755)
    (base / "etcd").mkdir()
    etcd = EtcdCluster(base / "etcd", 1)
    etcd.start()
    cluster = PatroniCluster(base / "patroni", etcd.hosts,
                             {"ttl": 20, "loop_wait": 2, "retry_timeout": 5, "synchronous_mode": True})
    try:
        cluster.start()
        bodies = {"patroni_version": VERSION, **take_bodies({n["name"]: n["api"] for n in cluster.nodes})}
        OUT.write_text(json.dumps(bodies, indent=1, sort_keys=True) + "\n")
        print(f"wrote {OUT}")
    finally:
        cluster.stop()
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
