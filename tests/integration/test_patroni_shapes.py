"""Tools written for Patroni read pgha's REST bodies: the same scenario that recorded Patroni
4.1.5's bodies (``tests/patroni/record_bodies.py``) runs on a pgha cluster, and every key Patroni
sent is in pgha's body with a value of the same type."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgha.core.report import PATRONI_API
from pgha.testing import LocalCluster, http_request
from tests.patroni.record_bodies import take_bodies
from tests.patroni.shapes import differences, member_differences

pytestmark = pytest.mark.slow

REFERENCE = json.loads((Path(__file__).parents[1] / "patroni" / "bodies.json").read_text())


def compare(ref: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    out = []
    for case, taken in ref.items():
        if case == "patroni_version":
            continue
        for where, rec in taken.items():
            mine = ours[case][where]
            if mine["status"] != rec["status"]:
                out.append(f"{case} {where}: status {mine['status']}, Patroni {rec['status']}")
            if where.endswith("/cluster"):
                found = member_differences(rec["body"], mine["body"])
            elif where.endswith("/metrics"):
                found = [f"metric {name}{labels}: missing or labelled {mine['body'].get(name)}"
                         for name, labels in rec["body"].items() if mine["body"].get(name) != labels]
            else:
                found = differences(rec["body"], mine["body"])
            out.extend(f"{case} {where} {d}" for d in found)
    return out


def test_rest_bodies_have_every_key_patroni_4_has_with_the_same_types(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(dcs={"ttl": 6, "loop_wait": 1, "retry_timeout": 2, "synchronous_mode": True})
    c.start()
    ours = take_bodies({n.name: n.api for n in c.nodes})
    found = compare(REFERENCE, ours)
    assert not found, "\n".join(found)
    status = ours["running"]["primary:/patroni"]["body"]
    assert status["patroni"]["version"] == PATRONI_API == REFERENCE["patroni_version"]
    assert status["pgha"]["version"] and status["patroni"]["name"] == status["name"]
    # the states and roles in Patroni's words
    members = ours["running"]["primary:/cluster"]["body"]["members"]
    assert sorted(m["role"] for m in members) == ["leader", "replica", "sync_standby"]
    assert {m["state"] for m in members} <= {"running", "streaming"}
    assert ours["running"]["replica:/patroni"]["body"]["replication_state"] == "streaming"
    assert http_request("GET", members[0]["api_url"])[0] == 200  # api_url names the status URL, as Patroni's


def test_shape_check_catches_a_renamed_key_and_a_changed_type() -> None:
    ref = REFERENCE["running"]["primary:/patroni"]["body"]
    renamed = {("xlog_position" if k == "xlog" else k): v for k, v in ref.items()}
    retyped = {**ref, "timeline": str(ref["timeline"])}
    assert differences(ref, renamed) == [f".xlog: missing (Patroni has {ref['xlog']!r})"]
    assert differences(ref, retyped)[0].startswith(".timeline: Patroni has number")
    assert differences(ref, {**ref, "extra": 1}) == []
