"""Reading a timeline history file (``core.timelines.switch_point``)."""

from __future__ import annotations

from pgha.core.timelines import parse_lsn, switch_point

HISTORY = "1\t0/3000000\tno recovery target specified\n\n2\t1/5000098\tno recovery target specified\n"


def test_the_switch_point_of_each_parent_timeline_is_read_from_its_line() -> None:
    assert switch_point(HISTORY, 1) == 0x3000000
    assert switch_point(HISTORY, 2) == (1 << 32) + 0x5000098 == parse_lsn("1/5000098")
    assert switch_point(HISTORY, 3) is None  # not a parent of this timeline
    assert switch_point("", 1) is None
