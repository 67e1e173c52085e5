"""Which etcd endpoint a request asks next (pgha.dcs.etcd.next_endpoint), for any shared current
endpoint moving under the request's feet."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pgha.dcs.etcd import next_endpoint


@given(st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=n, max_size=n))))
def test_a_round_asks_every_endpoint_once_however_the_current_one_moves(case: tuple[int, list[int]]) -> None:
    n, currents = case
    tried: set[int] = set()
    asked = []
    for current in currents:
        idx = next_endpoint(current, tried, n)
        assert idx not in tried
        if current not in tried:
            assert idx == current  # the endpoint that last answered goes first
        tried.add(idx)
        asked.append(idx)
    assert sorted(asked) == list(range(n))


def test_after_the_current_endpoint_the_others_follow_in_order() -> None:
    assert next_endpoint(1, {1}, 3) == 2
    assert next_endpoint(2, {2, 0}, 3) == 1
    assert next_endpoint(2, {0}, 3) == 2
