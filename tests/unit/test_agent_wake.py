"""What wakes an agent's loop at once, and when it reads the cluster anew instead of trusting its
watch: the agent's own wiring around the pure core (``agent.service``)."""

from __future__ import annotations


def test_the_leader_wakes_when_a_member_key_appears_so_that_its_slot_is_made_at_once() -> None:
    from pgha.core.wake import member_appeared, wakes
    from pgha.core.cluster import ClusterView, Member

    view = ClusterView(leader="n2", members={"n2": Member("n2"), "n3": Member("n3")})
    assert member_appeared(view, "n2", {"members/n1"})  # the old primary, back after a cut
    assert not member_appeared(view, "n2", {"members/n3", "status"})  # a known member's every-loop update
    assert not member_appeared(view, "n3", {"members/n1"})  # only the leader makes slots
    assert wakes(view, "n3", {"history"}) and not wakes(view, "n3", {"members/n1", "status"})


def test_the_watch_is_read_anew_when_a_renewal_succeeds_after_failures() -> None:
    # found by the matrix (one-way drop to etcd): the stream stalled without closing and the loop
    # decided on our own expired leader key; the real leader showed 4 s later
    from types import SimpleNamespace

    from pgha.agent.service import Agent

    restarts: list[int] = []
    agent = SimpleNamespace(keeper=SimpleNamespace(ok=True), _unreached=False,
                            cache=SimpleNamespace(restart=lambda: restarts.append(1)), wake=lambda: None)
    Agent._renewal_changed(agent)  # type: ignore[arg-type]
    assert restarts == []  # renewals that keep succeeding: the stream is trusted
    agent.keeper.ok = False
    Agent._renewal_changed(agent)  # type: ignore[arg-type]
    agent.keeper.ok = True
    Agent._renewal_changed(agent)  # type: ignore[arg-type]
    assert restarts == [1] and not agent._unreached
