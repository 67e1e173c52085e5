"""The drill's verdict on a history of writes."""

from __future__ import annotations

from pgha.drill.verdict import judge
from pgha.drill.writer import Op


def ok(i: int, at: float, tl: int = 1) -> Op:
    return Op(i, "ok", at, tl)


def test_a_clean_switchover_passes_with_its_gap_measured() -> None:
    ops = [ok(1, 0.0), ok(2, 0.1), Op(3, "unknown", 0.2), Op(4, "failed", 0.5), ok(5, 1.6, 2), ok(6, 1.7, 2)]
    v = judge(ops, {1, 2, 5, 6}, max_gap=5, sync=True)
    assert v.passed and v.acknowledged == 4 and round(v.gap, 6) == 1.5 and v.gap_from == 0.1


def test_lost_writes_fail_only_in_synchronous_mode() -> None:
    ops = [ok(1, 0.0), ok(2, 0.1), ok(3, 2.0, 2)]
    assert judge(ops, {1, 3}, 5, sync=False).passed
    v = judge(ops, {1, 3}, 5, sync=True)
    assert v.lost == (2,) and not v.passed and "lost in synchronous mode" in v.problems[0]


def test_phantoms_forks_and_a_long_gap_each_fail_it() -> None:
    ops = [ok(1, 0.0), Op(2, "failed", 0.1), ok(3, 9.0, 2), ok(4, 9.1, 1)]  # 4: old timeline after the new one
    v = judge(ops, {1, 2, 3, 4}, max_gap=5, sync=False)
    assert v.phantoms == (2,) and v.forks == (4,) and v.gap == 9.0
    assert len(v.problems) == 3 and not v.passed
    assert not judge([], set(), 5, False).passed
