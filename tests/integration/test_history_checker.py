"""The proof of issue 5, short version: repeated faults under concurrent writes through HAProxy,
then a history check. Synchronous (strict) mode must lose nothing; no mode may fork."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import psycopg
import pytest

from pgha.testing import FAST, HAProxy, LocalCluster, wait_for
from tests.history import FAULTS, ROWS, Client, Op, Reader, check, run

pytestmark = pytest.mark.slow


def test_checker_finds_lost_forked_and_phantom_writes() -> None:
    ops = [Op(1, 0, "ok", (1,), 1.0), Op(2, 0, "ok", (1, 2), 2.0),
           # row 1: two branches acknowledging at the same time: a fork
           Op(3, 1, "ok", (3,), 1.0), Op(4, 1, "ok", (4,), 1.5), Op(7, 1, "ok", (3, 7), 2.0),
           # row 3: a branch that ended before the other began: lost writes, not a fork
           Op(8, 3, "ok", (8,), 1.0), Op(9, 3, "ok", (9,), 3.0),
           Op(5, 2, "failed"), Op(6, 2, "unknown")]
    report = check(ops, {0: (1,), 1: (3, 7), 2: (5, 6), 3: (9,)}, [])
    assert report.lost == [2, 4, 8]
    assert report.forks == [(1, (3,), (4,))]
    assert report.phantoms == [5]


def test_checker_finds_writes_a_node_acknowledged_after_a_newer_timeline_began_elsewhere() -> None:
    ops = [Op(1, 0, "ok", (1,), 1.0, "10.77.0.11", 1),
           Op(2, 0, "ok", (1, 2), 3.0, "10.77.0.12", 2),  # n2's first write on timeline 2
           Op(3, 1, "ok", (3,), 3.5, "10.77.0.11", 1),  # n1 still writing on timeline 1: late
           Op(4, 1, "ok", (3, 4), 5.0, "10.77.0.11", 3)]  # n1 promoted again later: fine
    report = check(ops, {0: (1, 2), 1: (3, 4)}, [])
    assert report.late == [(3, "10.77.0.11", 1)]
    assert report.lost == [] and report.forks == []


def test_checker_tells_an_acknowledgement_the_network_held_back_from_a_second_writer() -> None:
    ops = [Op(1, 0, "ok", (1,), 1.0, "10.77.0.11", 1, ran=101.0),
           # n1 ran op 2 before n2 began, but its reply arrived after n2's first write
           Op(2, 1, "ok", (2,), 4.0, "10.77.0.11", 1, ran=101.5),
           Op(3, 1, "ok", (3,), 3.0, "10.77.0.12", 2, ran=103.0),  # n2's first write on timeline 2
           Op(4, 0, "ok", (1, 4), 3.5, "10.77.0.12", 2, ran=103.5)]
    report = check(ops, {0: (1, 4), 1: (3,)}, [])
    assert report.late == [] and report.forks == []
    assert report.delayed == [(2, "10.77.0.11", 1)]
    assert report.lost == [2]


def test_checker_tells_a_statement_sent_before_the_fault_from_one_a_second_writer_took() -> None:
    """A whole node frozen for 23 s: its client had sent op 2 before the freeze; the thawed backend
    runs it after n2's first write. In flight across the fault, not a second writer. Op 4, sent to
    the thawed node after n2's first write, is a late write."""
    ops = [Op(1, 0, "ok", (1,), 1.0, "10.77.0.11", 1, ran=100.0, sent=99.9),
           Op(3, 1, "ok", (3,), 21.0, "10.77.0.12", 2, ran=120.0, sent=119.9),  # n2's first write
           Op(2, 0, "ok", (1, 2), 24.0, "10.77.0.11", 1, ran=123.0, sent=100.1),
           Op(5, 1, "ok", (3, 5), 24.5, "10.77.0.12", 2, ran=123.5, sent=123.4)]
    report = check(ops, {0: (1,), 1: (3, 5)}, [])
    assert report.inflight == [(2, "10.77.0.11", 1)] and report.late == [] and report.forks == []
    assert report.lost == [2]
    late = [*ops, Op(4, 1, "ok", (4,), 25.0, "10.77.0.11", 1, ran=124.0, sent=123.9),
            Op(6, 1, "ok", (3, 5, 6), 25.5, "10.77.0.12", 2, ran=124.5, sent=124.4)]
    report = check(late, {0: (1,), 1: (3, 5, 6)}, [])
    assert report.late == [(4, "10.77.0.11", 1)] and report.inflight == [(2, "10.77.0.11", 1)]
    assert report.forks == [(1, (3,), (4,))]


def _split_brain(seed: int, n: int, branches: int) -> tuple[list[Op], dict[int, tuple[int, ...]]]:
    """``n`` appends; from a random point on, each goes to one of ``branches`` writers at once."""
    rng = random.Random(seed)
    common: dict[int, list[int]] = {k: [] for k in range(ROWS)}
    tips: dict[tuple[int, int], list[int]] = {}
    split, ops = rng.randrange(n), []
    for i in range(1, n + 1):
        key, b = rng.randrange(ROWS), (rng.randrange(branches) if i > split else 0)
        if i <= split:
            common[key].append(i)
        else:
            tips.setdefault((key, b), []).append(i)
        outcome = rng.choice(["ok"] * 8 + ["failed", "unknown"])
        result = tuple(common[key] + tips.get((key, b), [])) if outcome == "ok" else ()
        ran = i * 0.01 + (5.0 if b == 1 and rng.random() < 0.5 else 0.0)
        ops.append(Op(i, key, outcome, result, ran + rng.random() * 0.1, f"10.77.0.{11 + b}", 1 + b, ran))
    return ops, {k: tuple(common[k] + tips.get((k, 0), [])) for k in range(ROWS)}


def _pairwise_forks(ops: list[Op]) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """The definition, judged pair by pair with nothing shared (quadratic; small histories only)."""
    forks, seen = [], set()
    for key in range(ROWS):
        acked = [o for o in ops if o.outcome == "ok" and o.key == key]
        results = sorted({o.result for o in acked}, key=len)
        for a, b in zip(results, results[1:]):
            if b[: len(a)] == a:
                continue
            p = next(i for i in range(len(a)) if a[i] != b[i])
            in_a = [o.executed for o in acked if o.result[: p + 1] == a[: p + 1]]
            in_b = [o.executed for o in acked if o.result[: p + 1] == b[: p + 1]]
            split = (key, a[:p], frozenset({a[p], b[p]}))
            if min(in_a) <= max(in_b) and min(in_b) <= max(in_a) and split not in seen:
                seen.add(split)
                forks.append((key, a, b))
    return forks


def test_checker_agrees_with_the_pairwise_definition_of_a_fork_on_random_split_brains() -> None:
    found = 0
    for seed in range(30):
        ops, final = _split_brain(seed, random.Random(seed).randrange(50, 500), 1 + seed % 3)
        report = check(ops, final, [])
        assert report.forks == _pairwise_forks(ops), seed
        found += len(report.forks)
    assert found > 0  # the histories did fork


def test_checker_reads_a_split_brain_of_twenty_thousand_writes() -> None:
    """Judging every neighbouring pair against the whole row made this take over ten minutes
    (Patroni's asynchronous split-brain in bench/matrix.py); each split is judged once now."""
    ops, final = _split_brain(1, 20_000, 2)
    report = check(ops, final, [])
    assert 0 < len(report.forks) <= ROWS and report.late and report.lost


def test_synchronous_mode_loses_no_acknowledged_write_under_repeated_faults(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(dcs={**FAST, "synchronous_mode": True, "synchronous_mode_strict": True})
    c.start()
    proxy = HAProxy(c.base, c.nodes)
    proxy.start()
    try:
        report = run(c, proxy, cycles=len(FAULTS), log=print)
    finally:
        proxy.stop()
    print(report.summary())
    assert report.acknowledged > 100
    assert report.faults == list(FAULTS)
    assert report.lost == [], f"acknowledged writes lost: {report.lost[:20]}"
    assert report.forks == [], f"forked histories: {report.forks[:3]}"
    assert report.phantoms == [], f"failed writes that appeared: {report.phantoms[:20]}"


def test_the_reader_counts_a_replica_serving_reads_behind_and_names_it(
        make_cluster: Callable[..., LocalCluster]) -> None:
    """The matrix's stale reads: through the read port, a write acknowledged over a second ago and
    missing is counted, with the Postgres that served it and whether it was in recovery."""
    c = make_cluster(nodes=2)
    c.start()
    primary = c.leader()
    (replica,) = [n for n in c.nodes if n is not primary]
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE reg (k int PRIMARY KEY, v int[] NOT NULL DEFAULT '{}')")
        conn.execute("INSERT INTO reg (k) SELECT g FROM generate_series(0, %s) g", (ROWS - 1,))
    proxy = HAProxy(c.base, c.nodes)
    proxy.start()
    ops: list[Op] = []
    lock, stop = threading.Lock(), threading.Event()
    writer, reader = Client(1, proxy.write_port, stop, ops, lock), Reader(proxy.read_port, stop, ops, lock)
    try:
        writer.start()
        reader.start()
        wait_for("reads", lambda: reader.reads > 20, 20)
        with psycopg.connect(replica.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            wait_for("stale reads", lambda: len(reader.stale) > 5, 20)
            conn.execute("SELECT pg_wal_replay_resume()")
    finally:
        stop.set()
        writer.join(5)
        reader.join(5)
        proxy.stop()
    assert {(s.server, s.in_recovery) for s in reader.stale} == {(f"127.0.0.1:{replica.pg_port}", True)}
    assert all(s.age >= 1.0 for s in reader.stale)
