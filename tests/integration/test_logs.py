"""The agent's own log file as a log shipper reads it, from a running node."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgha.testing import LocalCluster, wait_for

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
