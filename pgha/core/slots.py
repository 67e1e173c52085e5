"""Permanent replication slots (``slots`` in the dynamic config), the members' slots a leader
keeps for a while after they are gone (``member_slots_ttl``), and the slots the agent leaves
alone (``ignore_slots``).

The primary keeps each permanent slot and publishes its position in ``status`` (a logical slot's
``confirmed_flush_lsn``); every replica keeps a copy advanced to that position, so that after a
failover the new primary has the slot, no further on than its consumer had confirmed, and the
consumer resumes without a gap.

PostgreSQL 15 has no failover slots and cannot create a logical slot on a standby, so, as
Patroni does, a replica copies a logical slot's state file from the primary and restarts once to
load it; from then on it advances its copy like a physical one. Decoding from that copy after a
failover needs the catalog rows of the slot's ``catalog_xmin``, which the primary keeps because
the standby reports its slots' horizons (``hot_standby_feedback``, turned on with logical slots)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgha.core.settings import ClusterSettings


def permanent(config: ClusterSettings) -> frozenset[str]:
    """The permanent physical slots' names."""
    return frozenset(name for name, spec in config.slots.items() if getattr(spec, "type", "physical") == "physical")


def logical(config: ClusterSettings) -> tuple[tuple[str, str, str], ...]:
    """The permanent logical slots: name, database, plugin."""
    return tuple(sorted((name, str(spec.database), str(spec.plugin)) for name, spec in config.slots.items()
                        if getattr(spec, "type", "physical") == "logical"))


def logical_waiting(config: ClusterSettings, wal_level: str) -> str | None:
    """Why the permanent logical slots cannot be created here yet (None: they can). A slot added
    at runtime to a cluster running with ``wal_level = replica`` needs a restart of the primary:
    the reload writes ``wal_level = logical``, which Postgres takes only at its next start (it
    shows as a pending restart meanwhile). pgha does not restart for it on its own, as Patroni
    does not: a restart of the primary is a cut for every client, the operator picks its time."""
    names = [n for n, _, _ in logical(config)]
    if not names or wal_level in ("", "logical"):
        return None
    return (f"permanent logical slot{'s' if len(names) > 1 else ''} {', '.join(names)} waiting for a restart: "
            f"wal_level must be logical (runs with {wal_level})")


def parameters(config: ClusterSettings) -> dict[str, Any]:
    """What permanent logical slots need of every node: logical WAL, and standbys reporting their
    slots' horizons so that the primary keeps the catalog rows a copied slot decodes with."""
    return {"wal_level": "logical", "hot_standby_feedback": "on"} if logical(config) else {}


def retained(present: frozenset[str], previous: Mapping[str, float], last_leader: str, me: str,
             wall_now: float, ttl: float) -> dict[str, float]:
    """The members the leader keeps slots for, as written to ``status``: each member present (0)
    and each gone for less than ``member_slots_ttl`` (since when, epoch seconds), so that one
    that returns (a restarted replica, the old primary after a failover) finds the WAL it needs.
    Changes only when a member goes or comes back: an idle leader writes nothing."""
    out = {n: 0.0 for n in present}
    gone = dict(previous)
    if last_leader and last_leader != me:
        gone.setdefault(last_leader, 0.0)  # the previous primary, before a failover
    for name, since in gone.items():
        if name in out or name == me:
            continue
        since = since or wall_now  # gone just now
        if wall_now - since < ttl:
            out[name] = since
    return out


@dataclass(frozen=True)
class ReplicaPlan:
    """What a replica does with the permanent slots this loop."""

    copy: tuple[str, ...] = ()  # logical slots to copy from the primary (a restart)
    physical: tuple[tuple[str, int], ...] = ()  # copies to keep, advanced to these positions
    logical: tuple[tuple[str, str, int], ...] = ()  # logical copies to advance: name, database, position
    drop: tuple[str, ...] = ()  # idle physical slots that are no permanent slot: left from a time as primary


def replica_plan(config: ClusterSettings, published: Mapping[str, int], local: Mapping[str, int],
                 replayed: int, idle: Iterable[str] = ()) -> ReplicaPlan:
    """On a replica, from the positions the primary published and the logical slots here (with
    their confirmed positions). A logical slot is copied once the primary has it (its position is
    published), and copied again when the copy here is further on than the primary's: left from a
    time this node was primary, and so past what the consumer confirmed on the new history. A
    copy is never advanced past what this standby replayed. The members' slots a node made as
    primary (or as a promotion's candidate) stay on it as a replica and would hold its WAL for
    ever, until its disk is full: idle ones that no permanent slot names are dropped, unless
    ``ignore_slots`` matches them."""
    copy = tuple(n for n, _, _ in logical(config) if n in published and (n not in local or local[n] > published[n]))
    physical = tuple(sorted((n, published[n]) for n in permanent(config) if n in published))
    advance = tuple((n, db, min(published[n], replayed)) for n, db, _ in logical(config)
                    if n in published and n in local and local[n] < min(published[n], replayed))
    drop = tuple(sorted(n for n in idle if n not in permanent(config)
                        and not ignored({"name": n, "type": "physical"}, config.ignore_slots)))
    return ReplicaPlan(copy, physical, advance, drop)


def ignored(slot: Mapping[str, Any], rules: Sequence[Any]) -> bool:
    """Whether ``slot`` (name, type, database, plugin) matches one of the ``ignore_slots`` rules:
    every field a rule gives must match."""
    for rule in rules:
        fields = {k: getattr(rule, k, None) for k in ("name", "type", "database", "plugin")}
        if all(v is None or slot.get(k) == v for k, v in fields.items()):
            return True
    return False
