"""``pgha drill`` against a real cluster behind HAProxy: the refusals, a switchover that passes
with nothing lost, a failover by killing the leader's agent, and a crash restart that fails a
--max-gap it cannot meet."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from pgha.testing import HAProxy, LocalCluster, Node

pytestmark = pytest.mark.slow


def drill(node: Node, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgha", "drill", "-c", str(node.config_path), "--dsn", dsn, *args],
                          capture_output=True, text=True, timeout=240, check=False)


def test_drill_switchover_failover_and_a_failed_gap_check(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    proxy = HAProxy(c.base, c.nodes)
    proxy.start()
    try:
        dsn = f"host=127.0.0.1 port={proxy.write_port} user=postgres password=supersecret dbname=postgres"
        leader = c.leader()

        refused = drill(leader, dsn, "--yes")
        assert refused.returncode == 2 and "--i-know-this-is-not-production demo" in refused.stderr
        unconfirmed = drill(leader, dsn, "--i-know-this-is-not-production", "demo")
        assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr

        done = drill(leader, dsn, "--i-know-this-is-not-production", "demo", "--yes", "-f", "json",
                     "--max-gap", "20")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert (report["result"], report["lost"], report["forks"], report["phantoms"]) == ("pass", 0, 0, 0)
        assert report["old_leader"] == leader.name and report["new_leader"] not in (None, leader.name)
        assert report["event"]["kind"] == "switchover" and 0 < report["write_gap_seconds"] < 20

        leader = c.leader()
        failed_over = drill(leader, dsn, "--i-know-this-is-not-production", "demo", "--yes", "--failover",
                            "--kill", "agent", "--max-gap", "40")
        assert failed_over.returncode == 0, failed_over.stdout + failed_over.stderr
        assert f"leader {leader.name} -> " in failed_over.stdout and "result: PASS" in failed_over.stdout
        assert "timeline (failover" in failed_over.stdout and "detection" in failed_over.stdout

        leader = c.leader()
        too_slow = drill(leader, dsn, "--i-know-this-is-not-production", "demo", "--yes", "--failover",
                         "--kill", "postgres", "--max-gap", "0.01", "-f", "json")
        assert too_slow.returncode == 1, too_slow.stdout + too_slow.stderr
        report = json.loads(too_slow.stdout)
        assert report["result"] == "fail" and any("exceeds --max-gap" in p for p in report["problems"])
        assert report["new_leader"] == leader.name  # a crash restart in place, not a failover
        assert report["event"]["kind"] == "restart" and report["event"]["phases"][0]["name"] == "down"
    finally:
        proxy.stop()
