"""The pgha command end to end, through its own entry point, on real etcd, Postgres and agents."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import yaml

from pgha.testing import LocalCluster, Node, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow
TTL = 6


def pgha(c: LocalCluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgha", *args, "-c", str(c.nodes[0].config_path)],
                          capture_output=True, text=True, input=stdin, timeout=180)


def ok(c: LocalCluster, *args: str, stdin: str | None = None) -> str:
    r = pgha(c, *args, stdin=stdin)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def refused(c: LocalCluster, *args: str, stdin: str | None = None) -> str:
    r = pgha(c, *args, stdin=stdin)
    assert r.returncode != 0, r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def writable(node: Node) -> bool:
    try:
        return sql(node.dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001
        return False


def test_list_switchover_history_and_refusals(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(tags={"n3": {"nofailover": True}})
    c.start()
    leader = c.leader()
    rows = json.loads(ok(c, "list", "-f", "json"))
    assert sorted(r["Role"] for r in rows) == ["Leader", "Replica", "Replica"]
    assert any(r["Tags"] == "nofailover: True" for r in rows)
    assert yaml.safe_load(ok(c, "list", "-f", "yaml"))[0]["Member"] == "n1"
    tsv = ok(c, "list", "-f", "tsv").splitlines()
    assert tsv[0].split("\t")[:6] == ["Member", "Host", "Role", "State", "TL", "Lag in MB"] and len(tsv) == 4
    pretty = ok(c, "topology")
    assert "+ Cluster: demo" in pretty and f"| {leader.name} " in pretty and "| + " in pretty

    assert "not a member" in refused(c, "switchover", "--candidate", "ghost", "--force")
    assert "leader name does not match" in refused(c, "switchover", "--leader", "nobody", "--force")
    if leader.name != "n3":
        assert "nofailover" in refused(c, "switchover", "--candidate", "n3", "--force")
    target = next(n for n in c.nodes if n is not leader and n.name != "n3")
    out = ok(c, "switchover", "--candidate", target.name, "--force")
    assert f"{target.name} took the leader key" in out and f"switched over to {target.name}" in out
    assert c.leader().name == target.name
    wait_for("old leader streaming", lambda: leader.health("/replica") == 200, 30)
    # interactive: answer the prompts (primary, candidate "" = the best, when = now, confirm)
    out = ok(c, "switchover", stdin=f"{target.name}\n\nnow\ny\n")
    second = c.leader()
    assert second.name != target.name and second.name != "n3" and "switched over" in out
    hist = json.loads(ok(c, "history", "-f", "json"))
    assert [h["New Leader"] for h in hist] == [target.name, second.name]
    assert [h["TL"] for h in hist] == [1, 2]
    assert "Timestamp" in ok(c, "history")


def test_scheduled_switchover_happens_at_its_time(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    wait_for("replicas recorded as streaming", lambda: sorted(r["State"] for r in json.loads(ok(c, "list", "-f", "json")))
             == ["running", "streaming", "streaming"], 15)
    when = datetime.now(timezone.utc) + timedelta(seconds=4)
    out = ok(c, "switchover", "--scheduled", when.isoformat(), "--force")
    assert "scheduled" in out
    assert "Switchover scheduled at" in ok(c, "list")
    time.sleep(max(0.0, (when - datetime.now(timezone.utc)).total_seconds() - 1.5))
    assert c.leader().name == leader.name  # not before its time
    wait_for("switchover done", lambda: c.leader(5).name != leader.name, 15)
    assert datetime.now(timezone.utc) >= when
    assert "Switchover scheduled" not in ok(c, "list")


def test_failover_to_a_chosen_replica_with_the_leader_dead(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    chosen = sorted(n.name for n in c.nodes if n is not leader)[-1]  # not the one the default tie-break picks
    leader.signal_agent(signal.SIGKILL)
    leader.kill_postgres(signal.SIGKILL)
    out = ok(c, "failover", "--candidate", chosen, "--force")
    assert f"failed over to {chosen}" in out
    assert c.leader().name == chosen


def test_pause_stops_automatic_actions_and_resume_brings_them_back(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    ok(c, "pause", "--wait")
    assert "Maintenance mode: on" in ok(c, "list")
    assert "already" in refused(c, "pause")
    leader.kill_postgres(signal.SIGKILL)
    end = time.monotonic() + TTL + 3
    while time.monotonic() < end:
        assert not any(writable(n) for n in c.nodes)
        time.sleep(0.25)
    assert leader.postmaster_pid() is None  # stopped by hand while paused: not restarted
    # a manual switchover still works while paused... once the leader's Postgres is back
    ok(c, "resume", "--wait")
    wait_for("leader restarted in place", lambda: writable(leader), 15)
    assert c.leader().name == leader.name
    assert "Maintenance mode" not in ok(c, "list")
    ok(c, "pause", "--wait")
    out = ok(c, "switchover", "--force")
    assert "switched over" in out and c.leader().name != leader.name
    ok(c, "resume")


def test_rolling_restart_applies_pending_settings_replicas_first(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    assert "nothing to restart" in ok(c, "restart", "--pending", "--force")
    ok(c, "edit-config", "-p", "max_files_per_process=800", "--force")
    wait_for("pending restart on every member",
             lambda: all(r["Pending restart"] == "*" for r in json.loads(ok(c, "list", "-f", "json"))), 20)
    out = ok(c, "restart", "--pending", "--force").splitlines()
    assert [line.split(":")[0] for line in out][-1] == leader.name  # the primary last
    assert len(out) == 3
    assert c.leader().name == leader.name
    for n in c.nodes:
        assert sql(n.dsn(), "SHOW max_files_per_process")[0][0] == "800"
    wait_for("no pending restarts", lambda: "Pending restart" not in ok(c, "list"), 15)
    assert all(line.endswith("reloaded") for line in ok(c, "reload").splitlines())


def test_edit_config_validates_before_storing(make_cluster: Callable[..., LocalCluster], tmp_path: object) -> None:
    c = make_cluster()
    c.start()
    before = ok(c, "show-config")
    assert "loop_wait + 2*retry_timeout" in refused(c, "edit-config", "-s", "ttl=5", "-s", "loop_wait=2", "--force")
    assert "ttll: unknown key" in refused(c, "edit-config", "-s", "ttll=30", "--force")
    assert "maximum_lag_on_failover" in refused(c, "edit-config", "-s", "maximum_lag_on_failover=lots", "--force")
    assert ok(c, "show-config") == before
    r = pgha(c, "edit-config", "-s", "maximum_lag_on_failover=2097152", stdin="n\n")
    assert r.returncode != 0 and "+maximum_lag_on_failover: 2097152" in r.stdout
    assert ok(c, "show-config") == before
    out = ok(c, "edit-config", "-s", "maximum_lag_on_failover=2097152", "-p", "work_mem=12MB", stdin="y\n")
    assert "configuration changed" in out
    cfg = yaml.safe_load(ok(c, "show-config"))
    assert cfg["maximum_lag_on_failover"] == 2097152 and cfg["postgresql"]["parameters"]["work_mem"] == "12MB"
    patch = c.base / "patch.yml"
    patch.write_text("postgresql:\n  parameters:\n    work_mem: null\n    temp_buffers: 16MB\n")
    ok(c, "edit-config", "--apply", str(patch), "--force")
    params = yaml.safe_load(ok(c, "show-config"))["postgresql"]["parameters"]
    assert params == {"temp_buffers": "16MB"}
    for n in c.nodes:
        wait_for("temp_buffers applied", lambda n=n: sql(n.dsn(), "SHOW temp_buffers")[0][0] == "16MB", 15)


def test_reinit_replica_and_refuse_on_the_primary(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    replica = c.streaming_replicas()[0]
    assert "is the leader" in refused(c, "reinit", leader.name, "--force")
    assert "no such member" in refused(c, "reinit", "ghost", "--force")
    out = ok(c, "reinit", replica.name, "--force")
    assert "reinitializing" in out and f"{replica.name} reinitialized and streaming" in out
    assert replica.health("/replica") == 200


def test_switchover_under_continuous_writes_loses_no_acknowledged_write(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE w (id int PRIMARY KEY)")
    hosts = ",".join("127.0.0.1" for _ in c.nodes)
    ports = ",".join(str(n.pg_port) for n in c.nodes)
    dsn = (f"host={hosts} port={ports} user=postgres password=supersecret dbname=postgres "
           "target_session_attrs=read-write connect_timeout=2")
    acked: list[int] = []
    stop = threading.Event()

    def write() -> None:
        conn, i = None, 0
        while not stop.is_set():
            try:
                conn = conn or psycopg.connect(dsn, autocommit=True)
                i += 1
                conn.execute("INSERT INTO w VALUES (%s)", (i,))
                acked.append(i)
            except psycopg.Error:
                conn = None
                time.sleep(0.02)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    wait_for("writes flowing", lambda: len(acked) > 100, 10)
    ok(c, "switchover", "--force")
    n_before = len(acked)
    wait_for("writes on the new primary", lambda: len(acked) > n_before + 100, 15)
    stop.set()
    t.join(10)
    new = c.leader()
    assert new.name != leader.name
    present = {r[0] for r in sql(new.dsn(), "SELECT id FROM w")}
    assert [i for i in acked if i not in present] == []
    wait_for("old primary streaming", lambda: leader.health("/replica") == 200, 30)
    wait_for("old primary rejoined without a rewind", lambda: "rejoined without a rewind" in leader.log_text(), 10)
    assert "rewinding from" not in leader.log_text()


def test_remove_requires_the_cluster_name_and_stopped_agents(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=1)
    c.start()
    assert "still running" in refused(c, "remove", "demo")
    assert "not other" in refused(c, "remove", "other")
    c.nodes[0].stop()
    wait_for("member key gone", lambda: json.loads(ok(c, "list", "-f", "json")) == [], 15)
    assert "names do not match" in refused(c, "remove", "demo", stdin="dmeo\n")
    out = ok(c, "remove", "demo", stdin="demo\n")
    assert "removed cluster demo" in out
    assert "not found" in refused(c, "list")


def test_switchover_at_default_timing_reports_the_write_gap_and_a_prompt_rejoin(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs={"ttl": 30, "loop_wait": 10, "retry_timeout": 10})
    c.start()
    leader = c.leader()
    target = next(n for n in c.nodes if n is not leader)
    wait_for("the replica streaming", lambda: target.health("/replica") == 200, 30)
    out = ok(c, "switchover", "--candidate", target.name, "--force")
    m = re.search(rf"writes went to {target.name} after ([\d.]+) s, {leader.name} rejoined as its replica "
                  r"after ([\d.]+) s", out)
    assert m, out
    # the old primary follows at once (the leader key change is watched), not at its next loop
    assert float(m.group(2)) < 10, out
