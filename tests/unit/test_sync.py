"""Synchronous standby management: the key never claims more than Postgres guarantees, at every
step, whatever the standbys do (hypothesis); and who may be promoted."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from pgha.config.model import DynamicConfig, Tags
from pgha.core import actions as a
from pgha.core.cluster import ClusterView, LeaderStatus, Member, SyncState
from pgha.core.snapshot import PgState, Snapshot
from pgha.core.sync import guarantee, leader_actions, promotion_problem, render

NAMES = ("n2", "n3", "n4")


def snapshot(cfg: DynamicConfig, key: SyncState | None, setting: str, streaming: set[str],
             name: str = "n1", members: dict[str, Member] | None = None) -> Snapshot:
    members = members if members is not None else {
        n: Member(n, role="replica", state="streaming" if n in streaming else "running") for n in NAMES}
    view = ClusterView(initialize="1", config=cfg, leader="n1", members=members, sync=key,
                       status=LeaderStatus("n1", 1, 100))
    pg = PgState(data_dir_empty=False, running=True, in_recovery=False, timeline=1, lsn=100,
                 replica_lsns={n: 100 for n in streaming}, sync_setting=setting,
                 sync_confirmed=frozenset(n for n in streaming if f'"{n}"' in setting))
    return Snapshot(now=0.0, name=name, tags=Tags(), config=cfg, cluster=view, dcs_ok=True, pg=pg,
                    lease_valid_until=100.0)


def step(cfg: DynamicConfig, key: SyncState | None, setting: str, streaming: set[str]) -> tuple[SyncState | None, str, bool]:
    acts = leader_actions(snapshot(cfg, key, setting, streaming))
    for act in acts:
        if isinstance(act, a.WriteSyncState):
            key = SyncState("n1", act.members, act.quorum)
        elif isinstance(act, a.SetSyncStandbys):
            setting = act.setting
    return key, setting, bool(acts)


MODES = st.sampled_from([
    DynamicConfig(synchronous_mode=True), DynamicConfig(synchronous_mode=True, synchronous_node_count=2),
    DynamicConfig(synchronous_mode="quorum", synchronous_node_count=2), DynamicConfig(synchronous_mode="quorum"),
    DynamicConfig(synchronous_mode=True, synchronous_mode_strict=True)])


@settings(max_examples=300, deadline=None)
@given(cfg=MODES, changes=st.lists(st.sets(st.sampled_from(NAMES)), min_size=1, max_size=12),
       steps=st.lists(st.integers(0, 4), min_size=12, max_size=12))
def test_key_never_claims_more_than_postgres_guarantees(cfg: DynamicConfig, changes: list[set[str]],
                                                        steps: list[int]) -> None:
    key: SyncState | None = None
    setting = ""
    for streaming, n in zip(changes, steps):
        for _ in range(n + 1):
            key, setting, acted = step(cfg, key, setting, streaming)
            if key is not None and key.members:
                assert key.quorum <= guarantee(key.members, setting), (key, setting)
                assert key.quorum >= 1
            if not acted:
                break


def test_steady_state_lists_the_standby_postgres_waits_for() -> None:
    cfg = DynamicConfig(synchronous_mode=True)
    key, setting = None, ""
    for _ in range(6):
        key, setting, _ = step(cfg, key, setting, {"n2", "n3"})
    assert setting == 'FIRST 1 ("n2")' and key == SyncState("n1", ("n2",), 1)


def test_quorum_lists_every_standby_with_its_quorum() -> None:
    cfg = DynamicConfig(synchronous_mode="quorum", synchronous_node_count=2)
    key, setting = None, ""
    for _ in range(6):
        key, setting, _ = step(cfg, key, setting, set(NAMES))
    assert setting == 'ANY 2 ("n2", "n3", "n4")' and key == SyncState("n1", NAMES, 2)


def test_strict_mode_without_standbys_waits_for_any() -> None:
    assert render((), "on", 1, strict=True) == "*"
    assert render((), "on", 1, strict=False) == ""


def test_only_listed_standbys_may_be_promoted() -> None:
    cfg = DynamicConfig(synchronous_mode=True)
    key = SyncState("n1", ("n2",), 1)
    members = {n: Member(n, role="replica", state="streaming") for n in NAMES}
    base = snapshot(cfg, key, "", set(), name="n3", members=members)
    view = replace(base.cluster, leader=None, status=LeaderStatus("n1", 1, 100))
    assert "not a synchronous standby" in str(promotion_problem(replace(base, cluster=view)))
    assert promotion_problem(replace(base, name="n2", cluster=view)) is None


def test_quorum_promotion_needs_enough_standbys_to_answer() -> None:
    cfg = DynamicConfig(synchronous_mode="quorum", synchronous_node_count=2)
    key = SyncState("n1", NAMES, 2)
    alive = {n: Member(n, role="replica", state="running") for n in ("n2",)}
    s = snapshot(cfg, key, "", set(), name="n2", members=alive)
    s = replace(s, cluster=replace(s.cluster, leader=None))
    assert "only 1 of 3" in str(promotion_problem(s))
    alive["n3"] = Member("n3", role="replica", state="running")
    s = replace(s, cluster=replace(s.cluster, members=dict(alive)))
    assert promotion_problem(s) is None


def test_nofailover_standby_is_never_chosen_while_a_promotable_one_streams() -> None:
    cfg = DynamicConfig(synchronous_mode=True)
    members = {"n2": Member("n2", role="replica", state="streaming", tags={"nofailover": True}),
               "n3": Member("n3", role="replica", state="streaming")}
    s = snapshot(cfg, SyncState("n1", ()), "", {"n2", "n3"}, members=members)
    s = replace(s, pg=replace(s.pg, replica_lsns={"n2": 200, "n3": 100}))  # the nofailover one is ahead
    assert leader_actions(s) == (a.SetSyncStandbys('FIRST 1 ("n3")'),)
    # it is listed only when nothing else streams, and then everyone is told failover is impossible
    alone = snapshot(cfg, SyncState("n1", ()), "", {"n2"}, members=members)
    assert leader_actions(alone) == (a.SetSyncStandbys('FIRST 1 ("n2")'),)
    from pgha.core.sync import failover_impossible

    view = replace(alone.cluster, sync=SyncState("n1", ("n2",), 1))
    assert "nofailover" in (failover_impossible(view) or "")
    assert failover_impossible(replace(view, sync=SyncState("n1", ("n3",), 1))) is None


def test_postgres_grammar_is_read_whole_including_patronis_bare_list() -> None:
    from pgha.core.sync import postgres_quorum
    assert postgres_quorum('FIRST 2 ("n2", "n3")') == (("n2", "n3"), 2)
    assert postgres_quorum("ANY 1 (n2, n3)") == (("n2", "n3"), 1)
    assert postgres_quorum("2 (n2, n3, n4)") == (("n2", "n3", "n4"), 2)
    assert postgres_quorum("n2") == (("n2",), 1)  # Patroni's shape: FIRST 1
    assert postgres_quorum('n2, "n3"') == (("n2", "n3"), 1)
    for nobody in ("", "*", "FIRST 1 (*)", "broken (n2"):
        assert postgres_quorum(nobody) == ((), 0), nobody


def test_a_leader_migrated_from_patroni_keeps_its_synchronous_standby_recorded_throughout() -> None:
    # Patroni left {"sync_standby": "n2", "quorum": 0} and synchronous_standby_names = 'n2'
    key = SyncState.from_json('{"leader": "n1", "sync_standby": "n2", "quorum": 0}')
    setting, cfg = "n2", DynamicConfig(synchronous_mode=True)
    for _ in range(5):
        assert key is not None and key.members == ("n2",) and key.quorum <= guarantee(key.members, setting)
        key, setting, acted = step(cfg, key, setting, {"n2", "n3"})
        if not acted:
            break
    assert setting == 'FIRST 1 ("n2")' and key == SyncState("n1", ("n2",), 1)


def test_a_standby_that_confirmed_the_failsafe_primary_keeps_its_place_while_its_record_is_back() -> None:
    # etcd was away longer than ttl: n2's lease expired and its record is gone until its next loop.
    cfg = DynamicConfig(synchronous_mode=True, failsafe_mode=True, ttl=6, loop_wait=1, retry_timeout=2)
    members = {"n3": Member("n3", role="replica", state="streaming")}
    s = snapshot(cfg, SyncState("n1", ("n2",), 1), 'FIRST 1 ("n2")', {"n2", "n3"}, members=members)
    s = replace(s, now=100.0, lease_valid_until=200.0, failsafe_confirmed_at=99.5,
                cluster=replace(s.cluster, failsafe={n: f"http://{n}/patroni" for n in ("n1", "n2", "n3")}))
    assert leader_actions(s) == ()
    # once the confirmations no longer hold, a standby without a record is not kept: it may be dead
    assert leader_actions(replace(s, now=103.0)) == (a.WriteSyncState((), 0),)
    # nor one that was not among the members that confirmed us
    unasked = replace(s, cluster=replace(s.cluster, failsafe={"n1": "http://n1/patroni", "n3": "http://n3/patroni"}))
    assert leader_actions(unasked) == (a.WriteSyncState((), 0),)


def test_a_synchronous_standby_without_a_record_does_not_make_failover_look_impossible() -> None:
    from pgha.core.sync import failover_impossible

    cfg = DynamicConfig(synchronous_mode=True)
    s = snapshot(cfg, SyncState("n1", ("n2",), 1), 'FIRST 1 ("n2")', {"n2"},
                 members={"n3": Member("n3", role="replica", state="streaming")})
    assert failover_impossible(s.cluster) is None
