"""A hung Postgres: the postmaster and every backend SIGSTOPped, the shape of a storage stall
where processes block in the kernel. A hung replica is reported unhealthy and left alone; a hung
leader is SIGKILLed (postmaster and backends) and restarted in place, and when it cannot come
back within ttl of the hang the key is released and a replica takes over. No two nodes are ever
writable, and nothing of the hung primary survives to take a write once it thaws."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from pgha.postgres import processes
from pgha.testing import FAST, LocalCluster, Node, wait_for
from pgha.testing.cluster import thaw

pytestmark = pytest.mark.slow
TTL = FAST["ttl"]


def gone(pid: int) -> bool:
    return not processes.alive(pid)


def is_writable(n: Node) -> bool:
    try:
        with psycopg.connect(n.dsn(), connect_timeout=1, autocommit=True) as conn:
            return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
    except Exception:  # noqa: BLE001 - down, hung or refusing
        return False


class Probe:
    """Asks every node every 0.1 s, each from a thread of its own (a hung node answers no one),
    whether it is writable; ``writable`` keeps (time, node) of each yes."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes, self.writable, self.stop = nodes, list[tuple[float, str]](), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def _run(self, n: Node) -> None:
        while not self.stop.is_set():
            asked = time.monotonic()
            if is_writable(n):
                self.writable.append((asked, n.name))
            time.sleep(0.1)

    def since(self, t: float) -> list[tuple[float, str]]:
        return sorted(x for x in self.writable if x[0] >= t)


@contextmanager
def probing(nodes: list[Node]) -> Iterator[Probe]:
    p = Probe(nodes)
    for t in p.threads:
        t.start()
    try:
        yield p
    finally:
        p.stop.set()
        for t in p.threads:
            t.join(5)


def test_hung_postgres_replica_unhealthy_leader_restarted_in_place_or_replaced_within_ttl(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster()
    c.start()
    leader = c.leader()
    replica = next(n for n in c.nodes if n is not leader)

    # A hung replica: unhealthy for the load balancer, never a candidate, not killed.
    pids = replica.freeze_postgres()
    try:
        wait_for(f"{replica.name} reported unhealthy", lambda: replica.health("/replica") == 503, 10)
        assert "does not answer" in (replica.status() or {}).get("note", "")
        assert c.primaries() == [leader]
    finally:
        thaw(pids)
    wait_for(f"{replica.name} a healthy replica again", lambda: replica.health("/replica") == 200, 20)
    assert replica.postmaster_pid() == pids[0], "a hung replica was restarted"

    with probing(c.nodes) as probe:
        # A hung leader: killed and restarted in place on the same node.
        pids = leader.freeze_postgres()
        t0 = time.monotonic()
        try:
            wait_for(f"{leader.name} writable again", lambda: any(n == leader.name for _, n in probe.since(t0 + 0.5)),
                     TTL + 4)
            assert all(gone(p) for p in pids), "a hung postmaster or backend survived its restart"
        finally:
            thaw(pids)
        took = min(t for t, n in probe.since(t0)) - t0
        print(f"hung leader restarted in place: writable again {took:.1f} s after the hang")
        assert {n for _, n in probe.since(t0)} == {leader.name}, "another node was writable"
        assert leader.postmaster_pid() not in pids
        text = leader.log_text()
        assert "does not answer" in text and "killed postgres and its backends" in text

        # Hung again, and it cannot start (a setting that fails every start): the key goes.
        wait_for("the restarted leader settled", lambda: c.primaries() == [leader], 20)
        with open(leader.data_dir / "postgresql.auto.conf", "a") as f:
            f.write("shared_preload_libraries = 'pgha_no_such_library'\n")
        pids = leader.freeze_postgres()
        t1 = time.monotonic()
        try:
            wait_for("another node writable", lambda: any(n != leader.name for _, n in probe.since(t1)), TTL + 8)
            assert all(gone(p) for p in pids), "a hung postmaster or backend outlived the release of the key"
        finally:
            thaw(pids)
        new = next(n for _, n in probe.since(t1) if n != leader.name)
        print(f"hung leader that cannot start: {new} writable "
              f"{min(t for t, n in probe.since(t1) if n == new) - t1:.1f} s after the hang")
        assert leader.name not in {n for _, n in probe.since(t1)}, "the hung primary took writes again"
        assert "released leader key" in leader.log_text()
