"""Availability from heartbeats: gaps beyond the interval are downtime, spread over the hours and
days they fall in; the summary counts an open gap; budgets and nines."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from pgha.core import availability as av
from pgha.core.events import Event, Phase

T0 = datetime(2026, 11, 28, 1, 59, 50, tzinfo=timezone.utc).timestamp()


def beats(times: list[float], interval: float = 1.0) -> av.Ledger:
    ledger = av.Ledger()
    for t in times:
        ledger = av.beat(ledger, t, None, interval)
    return ledger


def test_steady_heartbeats_are_all_up() -> None:
    ledger = beats([T0 + i + 0.05 * (i % 3) for i in range(20)])
    s = av.summarize(ledger, T0 - 60, ledger.last, 1.0)
    assert s.down == 0 and s.uptime == 1.0 and math.isinf(s.nines) and ledger.incidents == ()


def test_a_gap_is_downtime_split_across_the_hours_it_spans() -> None:
    ledger = beats([T0, T0 + 1, T0 + 2, T0 + 20, T0 + 21])  # 02:00 falls inside the gap
    (incident,) = ledger.incidents
    assert (incident.start, incident.end) == (T0 + 3, T0 + 20) and incident.down == 17
    assert ledger.hours["2026-11-28T01"] == (10.0, 7.0) and ledger.hours["2026-11-28T02"] == (11.0, 10.0)
    s = av.summarize(ledger, T0 - 60, ledger.last, 1.0)
    assert s.observed == 21 and s.down == 17 and round(s.nines, 3) == round(-math.log10(17 / 21), 3)


def test_a_stepped_wall_clock_between_two_heartbeats_is_no_gap() -> None:
    # found by the matrix: a node whose clock stepped 2 h ahead logged a 7200 s gap
    ledger = beats([T0, T0 + 1])
    ahead, step = av.rebase(ledger, T0 + 7202, elapsed=1.0)
    assert step == pytest.approx(7200.0)
    ahead = av.beat(ahead, T0 + 7202, None, 1.0)
    assert ahead.incidents == () and ahead.last == T0 + 7202
    # 2 h back: the next beats count again at once, not only once the clock is back past ``last``
    back, step = av.rebase(ledger, T0 - 7198, elapsed=1.0)
    assert step == pytest.approx(-7200.0)
    back = av.beat(av.beat(back, T0 - 7198, None, 1.0), T0 - 7190, None, 1.0)
    assert [round(i.end - i.start) for i in back.incidents] == [7]  # a real gap after the step still counts
    # no step: nothing moves; a first beat has nothing to compare with
    assert av.rebase(ledger, T0 + 2, elapsed=1.0) == (ledger, 0.0)
    assert av.rebase(ledger, T0 + 2, elapsed=None) == (ledger, 0.0)


def test_a_new_leader_continues_from_the_last_heartbeat_in_the_table() -> None:
    ledger = beats([T0, T0 + 1])
    ledger = av.beat(ledger, T0 + 9, T0 + 1.5, 1.0)  # the old primary's last beat replicated at +1.5
    assert ledger.incidents[-1].start == T0 + 2.5 and ledger.incidents[-1].end == T0 + 9


def test_an_open_gap_counts_as_down_until_now_once_the_leader_should_have_stored_the_ledger() -> None:
    ledger = beats([T0, T0 + 1])
    quiet = T0 + 1 + av.FLUSH + 1  # a live leader stores it every FLUSH s
    assert av.summarize(ledger, T0 - 1, quiet, 1.0).down == 0
    s = av.summarize(ledger, T0 - 1, quiet + 10, 1.0)
    assert s.down == av.FLUSH + 10 and s.incidents[-1].end == quiet + 10


def test_budgets_as_operators_quote_them() -> None:
    assert av.budget(99.99, 365 * 86400) / 60 == pytest.approx(52.56, abs=0.01)
    assert av.budget(99.99, 30 * 86400) / 60 == pytest.approx(4.32, abs=0.01)


def test_the_ledger_survives_its_key_and_links_incidents_to_events() -> None:
    ledger = beats([T0, T0 + 1, T0 + 9])
    assert av.Ledger.from_json(ledger.to_json()) == ledger and av.Ledger.from_json("junk") == av.Ledger()
    ev = Event("failover", "n2", "n1", 2, 0, "r", (Phase("detection", T0 - 4, 6.0), Phase("election", T0 + 2, 6.5)))
    ((_, event),) = av.linked(ledger.incidents, [ev])
    assert event is ev
