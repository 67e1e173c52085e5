"""Property tests: random crashes, pauses, partitions, clock jumps and writes on a simulated
cluster never produce two primaries answering /primary, nor promote a lagging replica."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pgha.config.model import DynamicConfig
from tests.unit.sim import SimCluster

CONFIG = DynamicConfig(ttl=6, loop_wait=1, retry_timeout=2, maximum_lag_on_failover=1000)


def events(n: int) -> st.SearchStrategy[list[tuple[object, ...]]]:
    names = st.sampled_from([f"n{i}" for i in range(1, n + 1)])
    return st.lists(st.one_of(
        st.tuples(st.just("tick"), names),
        st.tuples(st.just("tick"), names),
        st.tuples(st.just("tick"), names),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 2.0, 4.0, 7.0])),
        st.tuples(st.just("advance"), st.sampled_from([1.0, 2.0, 4.0, 7.0])),
        st.tuples(st.just("kill"), names),
        st.tuples(st.just("fault_primary"), st.sampled_from(["kill", "stop", "partition", "crash_pg"])),
        st.tuples(st.just("revive"), names),
        st.tuples(st.just("switchover"), names),
        st.tuples(st.just("round"), st.sampled_from([0.5, 1.0, 2.0]), st.booleans(), st.booleans()),
        st.tuples(st.just("round"), st.sampled_from([0.5, 1.0, 2.0]), st.booleans(), st.booleans()),
        st.tuples(st.just("round"), st.sampled_from([0.5, 1.0, 2.0]), st.booleans(), st.booleans()),
        st.tuples(st.just("write"), st.sampled_from([10, 500, 2000])),
        st.tuples(st.just("replicate"), names),
        st.tuples(st.just("replicate"), names),
        st.tuples(st.just("crash_pg"), names),
        st.tuples(st.just("alive"), names, st.booleans()),
        st.tuples(st.just("partition"), names, st.booleans()),
        st.tuples(st.just("clock_jump"), names, st.sampled_from([0.5, 3.0, 10.0])),
    ), min_size=60, max_size=200)


def run(cluster: SimCluster, script: list[tuple[object, ...]]) -> None:
    for ev in script:
        kind = ev[0]
        if kind == "tick":
            cluster.tick(str(ev[1]))
        elif kind == "advance":
            cluster.advance(float(ev[1]))  # type: ignore[arg-type]
        elif kind == "write":
            cluster.write(int(ev[1]))  # type: ignore[call-overload]
        elif kind == "replicate":
            cluster.replicate(str(ev[1]))
        elif kind == "crash_pg":
            cluster.crash_pg(str(ev[1]))
        elif kind == "round":
            # time passes, every live agent runs one loop (in either order), replicas may catch up
            cluster.advance(float(ev[1]))  # type: ignore[arg-type]
            order = sorted(cluster.nodes, reverse=bool(ev[2]))
            for name in order:
                if ev[3]:
                    cluster.replicate(name)
                cluster.tick(name)
                cluster.check()
        elif kind == "fault_primary":
            for name in cluster.writable():
                if ev[1] in ("kill", "stop"):
                    cluster.set_alive(name, False)  # killed agent, or SIGSTOP: no more loops
                if ev[1] in ("kill", "crash_pg"):
                    cluster.crash_pg(name)
                if ev[1] == "partition":
                    cluster.set_partitioned(name, True)
        elif kind == "switchover":
            cluster.request_switchover(str(ev[1]))
        elif kind == "revive":
            cluster.set_alive(str(ev[1]), True)
            cluster.set_partitioned(str(ev[1]), False)
        elif kind == "kill":
            cluster.set_alive(str(ev[1]), False)
            cluster.crash_pg(str(ev[1]))
        elif kind == "alive":
            cluster.set_alive(str(ev[1]), bool(ev[2]))
        elif kind == "partition":
            cluster.set_partitioned(str(ev[1]), bool(ev[2]))
        elif kind == "clock_jump":
            cluster.clock_jump(str(ev[1]), float(ev[2]))  # type: ignore[arg-type]
        cluster.check()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(3, 5))
def test_random_faults_never_yield_two_primaries_or_a_lagging_promotion(data: st.DataObject, n: int) -> None:
    cluster = SimCluster(n, CONFIG)
    run(cluster, data.draw(events(n)))
    event(f"promotions: {min(cluster.promotions, 3)}")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_nofailover_node_is_never_promoted(data: st.DataObject) -> None:
    cluster = SimCluster(3, CONFIG, nofailover=frozenset({"n3"}))
    run(cluster, data.draw(events(3)))
    assert cluster.nodes["n3"].pg.in_recovery or not cluster.nodes["n3"].pg.running


def test_primary_death_leads_to_exactly_one_new_primary_after_ttl() -> None:
    cluster = SimCluster(3, CONFIG)
    cluster.write(100)
    for name in ("n2", "n3"):
        cluster.replicate(name)
        cluster.tick(name)
    cluster.set_alive("n1", False)
    cluster.crash_pg("n1")
    for _ in range(8):
        cluster.advance(1.0)
        for name in ("n2", "n3"):
            cluster.tick(name)
            cluster.check()
    assert cluster.writable() == ["n2"]  # equal WAL and priority: the smaller name wins
    assert cluster.etcd.leader == "n2"


def test_partitioned_primary_demotes_before_its_lease_expires() -> None:
    cluster = SimCluster(3, CONFIG)
    cluster.set_partitioned("n1", True)
    demoted_at = None
    for step in range(1, 20):
        cluster.advance(0.5)
        cluster.tick("n1")
        if demoted_at is None and "n1" not in cluster.writable():
            demoted_at = cluster.now
    assert demoted_at is not None and demoted_at < CONFIG.ttl
