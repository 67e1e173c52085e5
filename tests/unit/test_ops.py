"""How a switchover or failover request's wait ends (``pgha.ops``), over a stand-in for etcd that
plays back a sequence of cluster views."""

from __future__ import annotations

import asyncio
from typing import Any

from pgha import ops
from pgha.config.model import DynamicConfig
from pgha.core.cluster import ClusterView, FailoverRequest

CFG = DynamicConfig(ttl=20, loop_wait=2, retry_timeout=4)
REQUEST = FailoverRequest("n1", "n2")


class Replay:
    """``load`` answers the views in turn, then the last one for ever."""

    def __init__(self, *views: ClusterView) -> None:
        self.views, self.loads, self.cleared = list(views), 0, False

    async def load(self, deadline: float) -> ClusterView:
        self.loads += 1
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    async def clear_failover(self, revision: int, deadline: float) -> bool:
        self.cleared = True
        return True


def complete(store: Replay, want: Any, what: str = "switchover") -> ops.Outcome:
    return asyncio.run(ops._complete(store, CFG, want, what, lambda new: f"switched over to {new}"))  # type: ignore[arg-type]


def test_a_request_the_old_leader_withdrew_is_reported_failed_at_once() -> None:
    store = Replay(ClusterView(leader="n1", failover=REQUEST), ClusterView(leader=None, failover=REQUEST),
                   ClusterView(leader="n1", failover=REQUEST), ClusterView(leader="n1"))
    out = complete(store, lambda new: new is not None and new != "n1")
    assert out.status == 503 and "did not happen: n1 leads and withdrew the request" in out.message
    assert store.loads == 4 and not store.cleared  # no wait for the bound, nothing left to withdraw


def test_a_switchover_carried_out_answers_the_new_leader() -> None:
    # the key stays until the new leader clears it; a moment without a leader is no outcome
    store = Replay(ClusterView(leader=None, failover=REQUEST), ClusterView(leader="n2", failover=REQUEST),
                   ClusterView(leader="n2"))
    out = complete(store, lambda new: new is not None and new != "n1")
    assert (out.status, out.leader, out.message) == (200, "n2", "switched over to n2")


def test_a_failover_that_another_member_won_is_reported_failed() -> None:
    store = Replay(ClusterView(leader=None, failover=FailoverRequest("", "n2")), ClusterView(leader="n3"))
    out = complete(store, lambda new: new == "n2", "failover to n2")
    assert out.status == 503 and out.message.startswith("failover to n2 did not happen: n3 leads")
