"""The failover timeline's records: consecutive phases timed from their cause, bounded, readable
back, and the histogram the metrics serve."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pgha.core import events


def test_failover_phases_start_at_the_estimated_last_renewal_and_add_up() -> None:
    ev = events.promotion("failover", "n2", "n1", 4, 500, "failover: no leader", 30.0,
                          lost=1000.0, acquired=1000.4, promoted=1000.9, first_write=1001.0)
    assert [(p.name, p.start, round(p.seconds, 3)) for p in ev.phases] == [
        ("detection", 970.0, 30.0), ("election", 1000.0, 0.4), ("promotion", 1000.4, 0.5), ("first_write", 1000.9, 0.1)]
    assert round(ev.total, 6) == 31.0 and ev.start == 970.0


def test_a_switchover_starts_when_the_old_leader_released_the_key() -> None:
    ev = events.promotion("switchover", "n2", "n1", 4, 500, "switchover from n1", 30.0,
                          lost=1000.0, acquired=1000.1, promoted=1000.3, first_write=1000.35)
    assert [p.name for p in ev.phases] == ["election", "promotion", "first_write"]
    assert round(ev.total, 6) == 0.35


def test_instants_out_of_order_never_make_a_phase_negative() -> None:
    ev = events.promotion("failover", "n2", "n1", 4, 500, "r", 6.0, lost=1000.0, acquired=999.9,
                          promoted=1000.2, first_write=1000.1)
    assert all(p.seconds >= 0 for p in ev.phases)


def test_events_are_bounded_and_read_back_as_written() -> None:
    ev = events.promotion("failover", "n2", "n1", 4, 500, "r", 6.0, 1000.0, 1000.1, 1000.2, 1000.3)
    kept: list[events.Event] = []
    for _ in range(events.LIMIT + 5):
        kept = events.append(kept, ev)
    assert len(kept) == events.LIMIT
    back = events.parse(events.to_json(kept[-2:]))
    assert [e.to_dict() for e in back] == [ev.to_dict(), ev.to_dict()]
    assert events.parse("not json") == () and events.parse('[{"kind": "x"}, 5]') == ()


@given(st.lists(st.tuples(st.sampled_from(["election", "promotion"]), st.floats(0, 100)), max_size=30))
def test_histogram_counts_every_observation_in_the_buckets_it_fits(obs: list[tuple[str, float]]) -> None:
    h = events.histogram(obs)
    for name, (counts, total, n) in h.items():
        mine = [s for p, s in obs if p == name]
        assert n == len(mine) and abs(total - sum(mine)) < 1e-6
        assert counts == [sum(1 for s in mine if s <= b) for b in events.BUCKETS]
