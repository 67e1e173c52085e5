"""When a record in etcd is worth writing again.

The leader's heartbeat commits a row every second, so every WAL position in the cluster moves a
little every loop, and an exact record would be rewritten by every member each loop (what made
pgha's idle etcd load twice Patroni's). Positions that moved by less than ``slack`` bytes are
therefore not written alone, but only while nothing depends on their last bytes:

- never in synchronous modes (slack 0: a commit's holders are judged to the byte);
- never while the cluster has no leader, nor for a replica that does not stream: then the race
  for the key compares the members' records, and those must be exact;
- the slack is at most 1/16 of ``maximum_lag_on_failover``, and the election adds it to the lag
  it reads from ``status`` (``core.election``), so a replica too far behind is still never
  promoted however stale the last bytes of ``status`` are.

Any other change (role, state, timeline, tags, a position moving back) is written at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pgha.core import sync
from pgha.core.cluster import ClusterView, LeaderStatus, Member
from pgha.core.settings import ClusterSettings

POSITION_SLACK = 64 << 10  # bytes: about a minute of heartbeats; one idle write every few minutes


def slack(config: ClusterSettings) -> int:
    """Bytes a WAL position may move before its record is written for that alone."""
    if sync.mode(config) != "off":
        return 0
    return max(0, min(POSITION_SLACK, config.maximum_lag_on_failover // 16))


def member_due(view: ClusterView, new: Member, config: ClusterSettings) -> bool:
    """Our member record in ``view`` should be replaced by ``new``."""
    old = view.members.get(new.name)
    if old is None:
        return True
    if old == new:
        return False
    steady = view.leader is not None and (new.role == "primary" or new.state == "streaming")
    if not steady or replace(old, lsn=new.lsn, replayed_lsn=new.replayed_lsn) != new:
        return True
    n = slack(config)
    return _moved(old.lsn, new.lsn, n) or _moved(old.replayed_lsn, new.replayed_lsn, n)


def status_due(old: LeaderStatus, new: LeaderStatus, config: ClusterSettings) -> bool:
    """The ``status`` key should be replaced by ``new`` (the leader's own view of it)."""
    if old == new:
        return False
    if replace(old, lsn=new.lsn, slots=new.slots) != new:
        return True
    n = slack(config)
    return _moved(old.lsn, new.lsn, n) or _slots_moved(old.slots, new.slots, n)


def _slots_moved(old: Mapping[str, int], new: Mapping[str, int], n: int) -> bool:
    return old.keys() != new.keys() or any(_moved(old[k], new[k], n) for k in new)


def _moved(old: int, new: int, n: int) -> bool:
    return new < old or new - old >= max(1, n)
