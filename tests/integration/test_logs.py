"""The agent's own log file as a log shipper reads it, from a running node."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.testing import LocalCluster, http_get, wait_for

pytestmark = pytest.mark.slow


def _records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "pgha.log").read_text().splitlines()]


def test_agent_logs_json_lines_to_its_dir_and_each_decision_once_per_change(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2)
    logs = {n.name: c.base / f"{n.name}-logs" for n in c.nodes}
    for n in c.nodes:
        n.config["log"] = {"format": "json", "dir": str(logs[n.name]), "file_size": 1_000_000, "file_num": 2}
    c.start()
    leader = c.leader()
    wait_for("both logs written", lambda: all((d / "pgha.log").exists() for d in logs.values()) or None, 10)
    time.sleep(2.0)  # the replica settles (streaming)
    before = {n: [r for r in _records(d) if r.get("kind") == "decision"] for n, d in logs.items()}
    time.sleep(4 * float(c.dcs["loop_wait"]))  # four idle loops: nothing changes, nothing is said
    for name, d in logs.items():
        records = _records(d)
        assert all(r["cluster"] == c.scope and r["node"] == name for r in records)
        decisions = [r for r in records if r.get("kind") == "decision"]
        assert decisions == before[name], decisions[len(before[name]):]
        said = [r["event"] for r in decisions]
        assert all(a != b for a, b in zip(said, said[1:], strict=False)), said  # once per change
    assert any(r["event"] == "leader" for r in _records(logs[leader.name]))
    assert not (c.base / leader.name / "agent.log").exists() or "leader" not in leader.log_text()


def test_sighup_applies_new_tags_names_what_needs_a_restart_and_survives_a_broken_file(
        make_cluster: Callable[..., LocalCluster]) -> None:
    # systemctl reload (ExecReload) sends SIGHUP: before, the signal's default action ended the agent
    c = make_cluster(nodes=1)
    c.start()
    n = c.leader()
    n.config["tags"] = {**n.config.get("tags", {}), "nosync": True}
    n.config["restapi"] = {**n.config["restapi"], "listen": "127.0.0.1:1"}
    n.config_path.write_text(yaml.safe_dump(n.config))
    n.signal_agent(signal.SIGHUP)
    wait_for("nosync in /patroni", lambda: (http_get(n.api + "/patroni")[1] or {}).get("tags", {}).get("nosync"), 10)
    wait_for("nosync in the member record", lambda: any(
        m.get("name") == n.name and m.get("tags", {}).get("nosync")
        for m in (http_get(n.api + "/cluster")[1] or {}).get("members", [])) or None, 10)
    assert "restapi changed" in n.log_text() and "takes an agent restart" in n.log_text()
    n.config_path.write_text("scope: [not, a, scope\n")
    n.signal_agent(signal.SIGHUP)
    wait_for("the reload error logged", lambda: "config reload failed" in n.log_text() or None, 10)
    assert n.agent_alive and n.health("/primary") == 200
