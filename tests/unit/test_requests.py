"""Operator request checks (pure) and the config merge."""

from __future__ import annotations

from pgha.config.model import DynamicConfig
from pgha.core.cluster import ClusterView, FailoverRequest, LeaderStatus, Member
from pgha.core.requests import LivePositions, check_failover, check_switchover, merge_patch

CFG = DynamicConfig(maximum_lag_on_failover=100)


def cluster(**members: Member) -> ClusterView:
    base = {"n1": Member("n1", role="primary", state="running", lsn=1000)}
    base.update(members)
    return ClusterView(initialize="1", leader="n1", members=base, status=LeaderStatus("n1", 1, 1000))


def test_switchover_to_a_streaming_replica_is_allowed() -> None:
    v = cluster(n2=Member("n2", role="replica", state="streaming", lsn=990))
    assert check_switchover(v, CFG, "n1", "n2") is None
    assert check_switchover(v, CFG, "n1", None, LivePositions(1000, {"n2": 990})) is None


def test_switchover_refusals_say_why() -> None:
    v = cluster(n2=Member("n2", role="replica", state="streaming", lsn=500),
                n3=Member("n3", role="replica", state="streaming", lsn=1000, tags={"nofailover": True}),
                n4=Member("n4", role="replica", state="running", lsn=1000))
    live = LivePositions(1000, {"n2": 500})
    r = check_switchover(v, CFG, "n1", "n2", live)
    assert r is not None and "lags 500 bytes" in r.reason
    # without the leader's live positions (the CLI), lag is left to the leader to judge
    assert check_switchover(v, CFG, "n1", "n2") is None
    cases = {("n9", "n2"): "leader name does not match",
             ("n1", "n3"): "nofailover", ("n1", "n4"): "not a streaming replica", ("n1", "n1"): "already the leader",
             ("n1", "zz"): "not a member", ("n1", None): "no healthy candidate"}
    for (leader, cand), reason in cases.items():
        r = check_switchover(v, CFG, leader, cand, live)
        assert r is not None and r.status == 412 and reason in r.reason, (leader, cand, r)
    busy = ClusterView(**{**v.__dict__, "failover": FailoverRequest("n1", "n2")})
    r = check_switchover(busy, CFG, "n1", "n2")
    assert r is not None and r.status == 409


def test_failover_needs_a_running_promotable_candidate() -> None:
    v = cluster(n2=Member("n2", role="replica", state="running"))
    assert check_failover(v, CFG, "n2") is None
    r = check_failover(v, CFG, "n1")
    assert r is not None and "already the leader" in r.reason


def test_merge_patch_merges_nested_objects_and_null_deletes() -> None:
    base = {"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}, "use_slots": True}}
    out = merge_patch(base, {"ttl": None, "postgresql": {"parameters": {"b": None, "c": 3}}})
    assert out == {"postgresql": {"parameters": {"a": 1, "c": 3}, "use_slots": True}}
    assert base["ttl"] == 30  # the input is not modified
