"""The poolers that follow the cluster, and the leader's hand-over handshake with them.

Each ``pgha pooler`` registers under ``poolers/<name>`` (bound to its own lease, so a dead one
disappears within its TTL) and writes there what it has done: paused for which hand-over, pointed
where. Before a planned switchover stops the old primary, the leader writes ``handover`` (bound to
its lease) and waits, at most ``pooler_pause_timeout``, until every registered pooler says it has
paused for that hand-over (``paused_for`` equals the key's create revision): from then on no pooled
client has a transaction open on the old primary, and new ones queue in the poolers until they
point at the new primary. A pause waits for the transactions open on the old primary; when the
bound runs out, the leader cancels the statements still running there (``cut``, for at most
``CUT_GRACE``): those clients get an error and keep their connections, and the poolers can finish
pausing. A pooler that still has not answered is passed over: the switchover goes on, and only that
pooler's clients see the errors they would see without it. Refusing the
switchover instead would let one broken pooler block every planned maintenance, and the unplanned
failover that may follow would give the same errors anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolerRecord:
    """What one pooler published under ``poolers/<name>``."""

    name: str
    state: str = "active"  # active | paused | pausing | nowhere (resumed with no primary to point at)
    target: str = ""  # the member its databases point at ("" none)
    paused_for: int = 0  # the hand-over (``handover`` create revision) it has paused for
    kind: str = "pgbouncer"  # pgbouncer | haproxy

    def to_json(self) -> str:
        return json.dumps({"state": self.state, "target": self.target, "paused_for": self.paused_for,
                           "kind": self.kind}, sort_keys=True)

    @classmethod
    def from_json(cls, name: str, raw: str) -> PoolerRecord:
        try:
            d = json.loads(raw)
            return cls(name=name, state=str(d.get("state", "")), target=str(d.get("target") or ""),
                       paused_for=int(d.get("paused_for") or 0), kind=str(d.get("kind") or "pgbouncer"))
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return cls(name=name, state="unknown")


@dataclass(frozen=True)
class Handover:
    """The ``handover`` key: ``leader`` is about to stop and hand the key to ``candidate``.
    ``revision`` (the key's create revision) names this hand-over; ``since`` is the epoch second
    the leader wrote it, on the leader's own clock (only the leader compares it)."""

    leader: str
    candidate: str
    since: float
    revision: int = 0

    def to_json(self) -> str:
        return json.dumps({"leader": self.leader, "candidate": self.candidate, "since": self.since})

    @classmethod
    def from_json(cls, raw: str, revision: int) -> Handover | None:
        try:
            d = json.loads(raw)
            return cls(str(d["leader"]), str(d["candidate"]), float(d["since"]), revision)
        except (json.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
            return None


def waiting_for(poolers: Mapping[str, PoolerRecord], handover: Handover) -> list[str]:
    """The poolers that have not yet said they paused for ``handover``, sorted."""
    return sorted(n for n, p in poolers.items() if p.paused_for != handover.revision)


@dataclass(frozen=True)
class Gate:
    """Where the leader stands in the handshake before handing over to ``candidate``."""

    announce: bool = False  # write ``handover`` now (none yet, or one for another candidate)
    waiting: tuple[str, ...] = ()  # poolers still to answer, within the bound
    cut: tuple[str, ...] = ()  # poolers still to answer after the bound: cancel what holds them
    late: tuple[str, ...] = ()  # poolers passed over: the bound ran out

    @property
    def ready(self) -> bool:
        return not self.announce and not self.waiting and not self.cut


CUT_GRACE = 0.5  # seconds after the bound for cancelled transactions to end and the poolers to answer


def gate(poolers: Mapping[str, PoolerRecord], handover: Handover | None, leader: str, candidate: str,
         wall_now: float, timeout: float) -> Gate:
    """The handshake's next step for ``leader``, handing over to ``candidate`` (pure)."""
    if not poolers or timeout <= 0:
        return Gate()
    if handover is None or handover.leader != leader or handover.candidate != candidate:
        return Gate(announce=True)
    missing = tuple(waiting_for(poolers, handover))
    if missing and wall_now - handover.since < timeout:
        return Gate(waiting=missing)
    if missing and wall_now - handover.since < timeout + CUT_GRACE:
        return Gate(cut=missing)
    return Gate(late=missing)
