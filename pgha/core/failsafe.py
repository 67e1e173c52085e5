"""Failsafe mode, as Patroni defines it: a primary that loses etcd keeps running while every
member named in the ``failsafe`` key confirms over its REST API that it sees this primary.

Why it is safe: a member that confirmed does not race for the leader key for ``ttl`` after it
answered, and the primary counts on a round of confirmations exactly as on a lease renewal sent
at the moment the round was sent, with ``ttl`` to run (``core.lease.held_until``): it stops
counting on it ``retry_timeout`` after the next round was due, and long before any member that
answered could race. The fence and the last-resort guard follow the same instant. A member that
cannot be reached, or that runs as a primary itself, fails the round: the primary then falls
back on its lease and demotes as usual."""

from __future__ import annotations

from collections.abc import Mapping

from pgha.core import lease
from pgha.core.actions import ConfirmFailsafe, Decision
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import Snapshot


def enabled(config: ClusterSettings) -> bool:
    return bool(config.failsafe_mode) and config.standby_cluster is None


def topology(s: Snapshot) -> tuple[tuple[str, str], ...] | None:
    """What the leader writes to the ``failsafe`` key: every member with a REST API, itself
    included (None: failsafe mode is off, and the key should not exist)."""
    if not enabled(s.config):
        return None
    published = {m.name: m.api_url + "/patroni" for m in s.cluster.members.values() if m.api_url}  # as Patroni writes it
    urls = {**confirmed(s), **published}
    mine = s.cluster.members.get(s.name)
    if s.name not in urls and mine is None:
        return None  # our own record is not published yet: write the key once it is
    return tuple(sorted(urls.items()))


def confirmed(s: Snapshot) -> Mapping[str, str]:
    """The members that confirmed this primary in a round that still holds. Right after an etcd
    outage longer than ttl their leases have expired and their records are gone until each agent's
    next loop: they stay in the failsafe key and keep their synchronous place meanwhile."""
    return (s.cluster.failsafe or {}) if holds(s) else {}


def valid_until(confirmed_at: float | None, config: ClusterSettings) -> float | None:
    """The confirmed round as a lease: granted when it was sent, for ``ttl``."""
    return None if confirmed_at is None else confirmed_at + config.ttl


def held_until(confirmed_at: float | None, config: ClusterSettings) -> float | None:
    return lease.held_until(valid_until(confirmed_at, config), confirmed_at, config)


def holds(s: Snapshot) -> bool:
    """This primary may count on its members' confirmations now."""
    until = held_until(s.failsafe_confirmed_at, s.config)
    return enabled(s.config) and until is not None and s.now < until


def round_timeout(config: ClusterSettings) -> float:
    """How long one round may take (each member gets this long to answer)."""
    return min(2.0, config.retry_timeout / 2)


def _may_ask(s: Snapshot) -> bool:
    """A round may start while the last one holds, or while our leader key surely still exists in
    etcd with time for the round before the fence fires. A lease renewal that fails takes until
    the lease stops holding to fail, so the first round starts just after that, not before."""
    if holds(s) or s.holds_lease():
        return True
    v = s.lease_valid_until
    return v is not None and s.now < lease.fence_deadline(v, s.now, s.config) - round_timeout(s.config)


def without_dcs(s: Snapshot) -> Decision | None:
    """A writable leader cut off from etcd, in failsafe mode: ask for confirmations while it may
    (None: failsafe does not apply, demote as usual)."""
    c = s.cluster
    if not (enabled(s.config) and s.pg.writable and c.leader == s.name and not s.config.pause):
        return None
    members = c.failsafe or {}
    if s.name not in members or not _may_ask(s):
        return None
    others = tuple(sorted((n, u) for n, u in members.items() if n != s.name))
    last = s.failsafe_asked_at
    note = f"etcd unreachable: primary while its {len(others)} other member(s) confirm it (failsafe mode)"
    if last is None or s.failsafe_confirmed_at is None or s.now - last >= s.config.loop_wait / 2:
        return Decision((ConfirmFailsafe(others),), note)
    return Decision((), note, recheck=max(0.1, last + s.config.loop_wait / 2 - s.now))


def refusal(writable: bool, holds_key: bool) -> str | None:
    """Why this member must not confirm another primary (None: it accepts): it runs as one, or
    holds the leader key and may be about to (Patroni answers the same words)."""
    return "Running as a leader" if writable or holds_key else None


def leader_elsewhere(s: Snapshot) -> str | None:
    """The member that asked us for a confirmation less than ``ttl`` ago: it may still run as the
    primary, so we must not race for the leader key. Unless its own record, published since etcd
    came back, says it no longer runs as one: it demoted (a failed round) and, holding no key,
    cannot be writable again, and we may be the most advanced replica left."""
    ping = s.failsafe_ping
    if not enabled(s.config) or ping is None or ping[0] == s.name or s.now - ping[1] >= s.config.ttl:
        return None
    record = s.cluster.members.get(ping[0])
    if s.dcs_ok and record is not None and record.role != "primary":
        return None
    return ping[0]


def unseen(s: Snapshot) -> list[str]:
    """Members of the failsafe key with no record in etcd: after an etcd outage longer than ttl
    every record is gone, and one of them may hold more of the last primary's WAL than we do."""
    if not enabled(s.config):
        return []
    return sorted(n for n in (s.cluster.failsafe or {}) if n != s.name and n not in s.cluster.members)


def race_problem(s: Snapshot) -> str | None:
    """In failsafe mode only members the primary asks for confirmations may race: one it does not
    know could not have stopped it."""
    members: Mapping[str, str] = s.cluster.failsafe or {}
    if enabled(s.config) and members and s.name not in members:
        return "not in the failsafe key (the last primary does not ask it for confirmations)"
    return None
