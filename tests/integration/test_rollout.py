"""Rolling restarts the cluster carries out, on real processes: writes through a real PgBouncer
that ``pgha pooler`` drives, reads through HAProxy's read port with the same watcher pushing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgha.testing import FAST, HAProxy, LocalCluster, http_get, http_request, wait_for
from pgha.testing.pooler import Pooled
from pgha.testing.workload import Readers, Workload, missing_on
from tests.conftest import sql

pytestmark = pytest.mark.slow


@dataclass
class Served:
    cluster: LocalCluster
    proxy: HAProxy
    pooled: Pooled


@pytest.fixture
def served(make_cluster: Callable[..., LocalCluster]) -> Iterator[Served]:
    c = make_cluster()
    c.start()
    proxy = HAProxy(c.base, c.nodes)
    proxy.start()
    p = Pooled(c, c.base / "pooler", haproxy_socket=str(proxy.socket))
    p.start(primary_port=c.leader().pg_port)
    try:
        yield Served(c, proxy, p)
    finally:
        p.stop()
        proxy.stop()


def cluster_body(c: LocalCluster) -> dict[str, Any]:
    for n in c.nodes:
        try:
            status, body = http_get(n.api + "/cluster")
        except OSError:
            continue
        if status == 200 and body:
            return body
    return {}


def rollout(c: LocalCluster) -> dict[str, Any]:
    return dict(cluster_body(c).get("rollout") or {})


PARAMETER = "max_files_per_process"  # postmaster context: takes a restart (the nodes' own config sets shared_buffers)


def change_restart_parameter(c: LocalCluster, value: str = "900") -> None:
    status, body, _ = http_request("PATCH", c.leader().api + "/config",
                                   {"postgresql": {"parameters": {PARAMETER: int(value)}}})
    assert status == 200, body
    wait_for("every member pending a restart", lambda: all(
        m.get("pending_restart") for m in cluster_body(c).get("members", [])) or None, 30)


def start_rollout(c: LocalCluster, **body: Any) -> dict[str, Any]:
    status, reply, _ = http_request("POST", c.leader().api + "/rollout", {"pending": True, "drain": 3, **body})
    assert status == 202, reply
    return dict(reply)


def restarting(r: dict[str, Any]) -> str | None:
    """The member the rollout restarts now (None: none)."""
    current = r.get("current")
    return current if current and r.get("phases", {}).get(current) == "restarting" else None


def ended(c: LocalCluster, timeout: float = 150) -> dict[str, Any]:
    return wait_for("the rollout over", lambda: (r := rollout(c)) and r.get("state") != "running" and r, timeout)


# Timed against HAProxy's checks (a replica re-pointed by the switchover must stream again within
# fall x inter): it runs with the partition lab, alone, not beside another test file's cluster.
@pytest.mark.lab
def test_rolling_restart_under_load_fails_no_write_through_the_pooler_and_no_read(served: Served) -> None:
    c, p = served.cluster, served.pooled
    old = c.leader()
    change_restart_parameter(c)
    writes = Workload(p.bouncer.dsn(), clients=4, idle=True)
    writes.setup()
    reads = Readers(f"host=127.0.0.1 port={served.proxy.read_port} user=postgres password=supersecret "
                    "dbname=postgres", clients=3)
    writes.start()
    reads.start()
    try:
        start_rollout(c)
        r = ended(c)
    finally:
        time.sleep(1.0)
        tally = writes.stop()
        reads.stop()
    assert r["state"] == "done", r
    assert set(r["phases"].values()) == {"done"}, r
    assert r["members"][-1] == old.name  # the primary last, through a switchover
    new = c.leader()
    assert new is not old
    for n in c.nodes:
        assert sql(n.dsn(), f"SHOW {PARAMETER}")[0][0] == "900", n.name
    assert not any(m.get("pending_restart") for m in cluster_body(c)["members"])
    assert tally.failed == 0 and tally.dropped == 0, tally.errors
    assert writes.idle_survived()
    assert missing_on(new.dsn(), tally.acked) == []
    assert reads.failed == [] and reads.done > 100, [(time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}", why)
                                                      for t, why in reads.failed[:1] + reads.failed[-1:]]


def test_rollout_goes_on_after_the_cli_and_the_restarting_members_agent_are_killed(served: Served) -> None:
    c = served.cluster
    change_restart_parameter(c, "800")
    cli = subprocess.Popen([sys.executable, "-m", "pgha", "restart", "-c", str(c.leader().config_path),
                            "--rolling", "--pending", "--drain", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    first = wait_for("a member restarting", lambda: rollout(c).get("current") or None, 30, interval=0.05)
    cli.kill()  # the terminal goes away: the cluster carries on
    cli.wait()
    member = next(n for n in c.nodes if n.name == first)
    member.signal_agent(signal.SIGKILL)
    time.sleep(1.0)
    member.start()
    r = ended(c)
    assert r["state"] == "done", r
    for n in c.nodes:
        assert sql(n.dsn(), f"SHOW {PARAMETER}")[0][0] == "800", n.name


def test_abort_stops_after_the_member_in_progress(served: Served) -> None:
    c = served.cluster
    old = c.leader()
    change_restart_parameter(c, "800")
    start_rollout(c)
    first = wait_for("a member in progress", lambda: rollout(c).get("current") or None, 30, interval=0.05)
    status, reply, _ = http_request("DELETE", old.api + "/rollout")
    assert status == 200 and first in reply["message"], reply
    r = ended(c)
    assert r["state"] == "aborted", r
    assert r["phases"][first] == "done"
    assert [m for m, ph in r["phases"].items() if ph == "done"] == [first]
    assert c.leader() is old  # never got to the switchover
    timeline = http_get(old.api + "/history?events=1")[1] or {}
    rolls = [ev for ev in (timeline.get("events") if isinstance(timeline, dict) else timeline) or []
             if isinstance(ev, dict) and ev.get("kind") == "rollout"]
    assert rolls and [p["name"] for p in rolls[-1]["phases"]] == [first], timeline
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(old.config_path)], capture_output=True,
                         text=True, check=True).stdout
    assert "Rolling restart aborted" in out, out


def test_a_member_that_does_not_come_back_stops_the_rollout_and_the_cluster_serves(served: Served) -> None:
    c = served.cluster
    old = c.leader()
    change_restart_parameter(c, "800")
    start_rollout(c, member_timeout=10)
    first = wait_for("a member restarting", lambda: restarting(rollout(c)), 30, interval=0.05)
    lost = next(n for n in c.nodes if n.name == first)
    lost.signal_agent(signal.SIGKILL)  # its host dies mid-restart
    lost.kill_postgres(signal.SIGKILL)
    r = ended(c, 60)
    assert r["state"] == "failed" and f"{first} did not come back within 10 s" in r["reason"], r
    assert c.leader() is old and old.health("/primary") == 200
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(old.config_path)], capture_output=True,
                         text=True, check=True).stdout
    assert f"{first} did not come back" in out, out


def test_refusals_say_why(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs={**FAST})
    c.start()
    leader = c.leader()
    assert http_request("POST", leader.api + "/rollout", {"pending": True})[1] == {"message": "nothing to restart"}
    assert http_request("PATCH", leader.api + "/config", {"pause": True})[0] == 200
    wait_for("paused", lambda: cluster_body(c).get("pause") or None, 15)
    status, reply, _ = http_request("POST", leader.api + "/rollout", {})
    assert status == 412 and "paused" in reply["error"], reply
    assert http_request("PATCH", leader.api + "/config", {"pause": False})[0] == 200
    wait_for("resumed", lambda: cluster_body(c).get("pause") is False or None, 15)
    replica = next(n for n in c.nodes if n is not leader)
    replica.signal_agent(signal.SIGKILL)
    replica.kill_postgres(signal.SIGKILL)
    time.sleep(2.5)  # two leader loops: its pg_stat_replication no longer lists the replica
    status, reply, _ = http_request("POST", leader.api + "/rollout", {})
    assert status == 412 and "unhealthy" in reply["error"], reply
    status, reply, _ = http_request("POST", leader.api + "/rollout", {"max_lag": "lots"})
    assert status == 400, reply


def _wrapped_bin_dir(base: Path, real: str) -> Path:
    """A copy of ``real`` (symlinks) whose ``postgres --version`` reports 15.99 once the file
    ``newer`` exists beside it: a package update, as the running server sees it."""
    d = base / "bin"
    d.mkdir(parents=True)
    for f in Path(real).iterdir():
        (d / f.name).symlink_to(f)
    (d / "postgres").unlink()
    (d / "postgres").write_text(f'#!/bin/sh\nif [ "$1" = "--version" ] && [ -e "{d}/newer" ]; then\n'
                                f'  echo "postgres (PostgreSQL) 15.99 (stand-in for a package update)"; exit 0\nfi\n'
                                f'exec {real}/postgres "$@"\n')
    (d / "postgres").chmod(0o755)
    return d


def test_a_replaced_postgres_binary_is_a_pending_restart_and_rolls_alone(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    dirs = {}
    for n in c.nodes:
        dirs[n.name] = _wrapped_bin_dir(c.base / f"{n.name}-bin", n.config["postgresql"]["bin_dir"])
        n.config["postgresql"]["bin_dir"] = str(dirs[n.name])
    c.start()
    replica = next(n for n in c.nodes if n is not c.leader())
    (dirs[replica.name] / "newer").touch()
    (dirs[replica.name] / "postgres").touch()  # the package manager replaces the file
    status = wait_for("pending restart shown", lambda: (b := http_get(replica.api + "/patroni")[1] or {})
                      .get("pending_restart") and b, 20)
    running = status["pending_restart_reason"]["server_version"]["old_value"]
    assert status["pending_restart_reason"] == {"server_version": {"old_value": running, "new_value": "15.99"}}
    out = subprocess.run([sys.executable, "-m", "pgha", "list", "-c", str(replica.config_path)], capture_output=True,
                         text=True, check=True).stdout
    assert f"server_version: {running}->15.99" in out, out
    out = subprocess.run([sys.executable, "-m", "pgha", "restart", "-c", str(replica.config_path), "--rolling",
                          "--older-than-installed"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    r = ended(c, 15)  # the CLI reads etcd; a member's /cluster may be a loop older
    assert r["state"] == "done" and r["phases"][replica.name] == "done", r
    assert {ph for m, ph in r["phases"].items() if m != replica.name} == {"skipped"}, r


def test_edit_config_rolling_restarts_for_a_restart_parameter_and_not_for_a_reload_one(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    cfg = str(c.leader().config_path)

    def edit(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "pgha", "edit-config", "-c", cfg, "--force", "--rolling", *args],
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert "no member needs a restart" in edit("-p", "work_mem=9MB")
    assert rollout(c) == {}
    out = edit("-p", f"{PARAMETER}=700")
    assert "rolling restart done" in out, out
    for n in c.nodes:
        assert sql(n.dsn(), f"SHOW {PARAMETER}")[0][0] == "700", n.name
