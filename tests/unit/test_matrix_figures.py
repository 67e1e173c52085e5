"""The verification matrix's figures from a recorded history, and how its table states them."""

from __future__ import annotations

from bench.matrix import old_primary_wrote, unwanted
from bench.matrix_table import UNMEASURED, cell
from tests.history import Op, regressions


def ok(op_id: int, at: float, timeline: int) -> Op:
    return Op(op_id, 0, "ok", (op_id,), at, "10.0.0.1", timeline)


def test_a_client_acknowledged_on_an_older_timeline_after_a_newer_one_is_a_regression() -> None:
    ops = [ok(1, 1.0, 1), ok(2, 2.0, 2), ok(3, 3.0, 1), ok(4, 4.0, 2), Op(5, 0, "failed", at=5.0)]
    assert regressions(ops) == [(3, 1, 2)]


def test_a_delayed_acknowledgement_of_a_write_run_before_the_fork_is_no_regression() -> None:
    # found by the matrix (link down, sync): a commit acknowledged by the sync standby just before
    # the link went down reached its client when the link came back, after the new primary's writes
    held = Op(3, 0, "ok", (3,), 30.0, "10.0.0.1", 1, ran=1000.5)
    newer = [Op(2, 0, "ok", (2,), 20.0, "10.0.0.2", 2, ran=1010.0), Op(4, 0, "ok", (4,), 31.0, "10.0.0.2", 2, ran=1021.0)]
    assert regressions([*newer, held]) == []
    ran_late = Op(3, 0, "ok", (3,), 30.0, "10.0.0.1", 1, ran=1015.0)  # the old primary ran it after the fork
    assert regressions([*newer, ran_late]) == [(3, 1, 2)]


def test_timelines_moving_forward_only_are_no_regression() -> None:
    assert regressions([ok(2, 2.0, 2), ok(1, 1.0, 1), ok(3, 3.0, 3)]) == []


def test_a_cell_gives_median_and_max_and_counts_the_runs_where_nothing_happened() -> None:
    assert cell([0, 0, 0]) == "0"
    assert cell([1, 2, 5]) == "2 / 5"
    assert cell([1.25, None, 3.5]) == "2.4 / 3.5 (1 never)"
    assert cell([None]) == "—"


def test_the_old_primarys_last_write_is_timed_by_when_it_ran_not_by_a_delayed_acknowledgement() -> None:
    # the link-down run: a commit the old primary ran 0.5 s into the fault reached its client 26.5 s in
    offset = 1000.0  # wall = monotonic + 1000
    delayed = Op(1, 0, "ok", (1,), 126.5, "10.0.0.1", 1, ran=1100.5)
    ran_before = Op(2, 0, "ok", (2,), 99.0, "10.0.0.1", 1, ran=1099.0)
    elsewhere = Op(3, 0, "ok", (3,), 110.0, "10.0.0.2", 2, ran=1110.0)
    assert old_primary_wrote([delayed, ran_before, elsewhere], "10.0.0.1", 1, 100.0, offset) == 0.5
    assert old_primary_wrote([ran_before, elsewhere], "10.0.0.1", 1, 100.0, offset) is None
    unknown = Op(4, 0, "ok", (4,), 102.0, "10.0.0.1", 1)  # no server time: its acknowledgement
    assert old_primary_wrote([unknown], "10.0.0.1", 1, 100.0, offset) == 2.0


def test_a_figure_some_runs_did_not_measure_is_given_over_the_others_and_says_so() -> None:
    assert cell([UNMEASURED, UNMEASURED]) == "not measured"
    assert cell([UNMEASURED, 3, 5, 4]) == "4 / 5 (3 of 4 runs)"
    assert cell([UNMEASURED, 0]) == "0 (1 of 2 runs)"


def test_a_failover_the_run_caused_on_purpose_is_not_unwanted() -> None:
    assert unwanted(1, "at most one", 0, 0) == 0
    assert unwanted(2, "at most one", 0, 0) == 1
    # The candidate had already taken over when the run killed it: the next failover was asked for.
    assert unwanted(2, "at most one", 0, 1) == 0
    assert unwanted(1, "no", 0, 0) == 1
    assert unwanted(0, "no", 1, 0) == 1
