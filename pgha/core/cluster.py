"""Immutable records of the cluster as read from etcd in one linearizable range read."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pgha.core import schedule
from pgha.core.poolers import Handover, PoolerRecord
from pgha.core.backup import Backup
from pgha.core.rollout import Rollout
from pgha.core.settings import ClusterSettings


@dataclass(frozen=True)
class Member:
    """What one agent published about itself under ``members/<name>`` (bound to its lease)."""

    name: str
    role: str = "uninitialized"  # primary | replica | uninitialized
    state: str = "stopped"  # running | streaming | starting | stopped | crashed | cloning | rewinding
    conn_url: str = ""
    api_url: str = ""
    host: str = ""
    port: int = 0
    timeline: int = 0
    lsn: int = 0  # primary: current WAL insert position; replica: max(received, replayed)
    replayed_lsn: int = 0
    tags: Mapping[str, Any] = field(default_factory=dict)
    version: str = ""
    pending_restart: bool = False
    pending_restart_reason: Mapping[str, Any] = field(default_factory=dict)  # parameter: old and new value
    scheduled_restart: str = ""
    pause: bool = False
    note: str = ""  # the agent's last decision, e.g. why it does not take over
    following: str = ""  # the member this replica streams from (cascading: not always the leader)
    started_at: float = 0.0  # when its Postgres started (epoch s; 0: not running or not known)
    sessions: int = -1  # client sessions on its Postgres (-1: not known): a draining replica waits for 0
    archive: str = ""  # a primary whose WAL archiving fails or lags ("": healthy or off; ``core.archive.flag``)
    stream_error: str = ""  # a standby that does not stream: why, in Postgres's words (``postgres.walreceiver``)

    @property
    def nofailover(self) -> bool:
        return bool(self.tags.get("nofailover")) or int(self.tags.get("failover_priority", 1)) <= 0

    @property
    def priority(self) -> int:
        return int(self.tags.get("failover_priority", 1))

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "name"}
        d["tags"] = dict(self.tags)
        d["pending_restart_reason"] = dict(self.pending_restart_reason)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, name: str, raw: str) -> Member:
        try:
            d = json.loads(raw)
        except json.JSONDecodeError:
            return cls(name=name, state="unknown")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "name"}
        return cls(name=name, **known)


def lsn_text(lsn: int) -> str:
    """A WAL position as Postgres writes it: 0/4000280."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class LeaderStatus:
    """The ``status`` key: the last primary's name, timeline and WAL position, written each loop."""

    leader: str = ""
    timeline: int = 0
    lsn: int = 0
    slots: Mapping[str, int] = field(default_factory=dict)  # permanent slots' positions on the primary
    retain: Mapping[str, float] = field(default_factory=dict)  # gone members whose slots are kept: since (epoch s)

    def to_json(self) -> str:
        d: dict[str, Any] = {"leader": self.leader, "timeline": self.timeline, "lsn": self.lsn}
        if self.slots:
            d["slots"] = dict(self.slots)
        if self.retain:
            d["retain_slots_since"] = dict(self.retain)  # not Patroni's retain_slots: a list there
        return json.dumps(d)

    @classmethod
    def from_json(cls, raw: str) -> LeaderStatus:
        try:
            d = json.loads(raw)
            slots, retain = d.get("slots") or {}, d.get("retain_slots_since") or {}
            return cls(leader=str(d.get("leader", "")), timeline=int(d.get("timeline", 0)), lsn=int(d.get("lsn", 0)),
                       slots={str(k): int(v) for k, v in slots.items()} if isinstance(slots, dict) else {},
                       retain={str(k): float(v) for k, v in retain.items()} if isinstance(retain, dict) else {})
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return cls()


@dataclass(frozen=True)
class FailoverRequest:
    """The ``failover`` key: an operator's switchover (``leader`` set) or failover (``leader``
    empty) towards ``candidate`` (empty: the best replica), not before ``scheduled_at`` (epoch s)."""

    leader: str = ""
    candidate: str = ""
    scheduled_at: float | None = None

    def to_json(self) -> str:
        return json.dumps({"leader": self.leader, "candidate": self.candidate, "scheduled_at": self.scheduled_at})

    @classmethod
    def from_json(cls, raw: str) -> FailoverRequest | None:
        try:
            d = json.loads(raw)
            at = None if d.get("scheduled_at") is None else float(d["scheduled_at"])
            if at is not None and not schedule.valid(at):
                at = math.inf  # a time no calendar holds is never due; DELETE /switchover clears it
            return cls(leader=str(d.get("leader") or ""), candidate=str(d.get("candidate") or ""), scheduled_at=at)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return None


@dataclass(frozen=True)
class SyncState:
    """The ``sync`` key: the standbys that hold every commit ``leader`` acknowledged.

    Mode on: every listed standby has each acknowledged commit. Quorum: any ``quorum`` of them do.
    Written only by the leader, with compare-and-set, and always on the safe side of Postgres: a
    standby is listed here only after Postgres waits for it, and unlisted before it stops waiting.
    """

    leader: str = ""
    members: tuple[str, ...] = ()
    quorum: int = 0

    def to_json(self) -> str:
        # Patroni's shape, so that a cluster handed back to Patroni reads it (it fails on a list):
        # the standbys as one comma-separated string, and ``quorum`` as Patroni counts it, the
        # listed nodes a racing standby must see besides itself (len - ours: see from_json).
        return json.dumps({"leader": self.leader, "sync_standby": ",".join(self.members) or None,
                           "quorum": len(self.members) - self.quorum if self.members else 0})

    @classmethod
    def from_json(cls, raw: str) -> SyncState | None:
        """Patroni's key (and ours, in its shape); also the list earlier pgha versions wrote,
        whose ``quorum`` was already ours. Patroni's ``quorum`` is len(active) - numsync
        (``patroni/quorum.py``): the standbys certain to hold each commit are len - quorum,
        every listed one in its mode on (quorum 0)."""
        try:
            d = json.loads(raw)
            listed = d.get("sync_standby") or ()
            names = listed.split(",") if isinstance(listed, str) else [str(x) for x in listed]
            members = tuple(n.strip() for n in names if n.strip())
            quorum = int(d.get("quorum") or 0)
            held = quorum if isinstance(listed, list) else max(0, len(members) - quorum)
            return cls(leader=str(d.get("leader") or ""), members=members, quorum=held)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return None


@dataclass(frozen=True)
class HistoryEntry:
    timeline: int
    lsn: int
    reason: str
    time: str
    leader: str


@dataclass(frozen=True)
class ClusterView:
    """The whole cluster at one etcd revision.

    ``initialize`` is None when nobody has claimed the cluster, "" while the winner bootstraps,
    and the system identifier afterwards.
    """

    initialize: str | None = None
    initialize_revision: int = 0
    config: ClusterSettings | None = None
    config_revision: int = 0
    leader: str | None = None
    leader_lease: int = 0
    leader_revision: int = 0
    members: Mapping[str, Member] = field(default_factory=dict)
    member_leases: Mapping[str, int] = field(default_factory=dict)  # the lease each record is bound to
    status: LeaderStatus = field(default_factory=LeaderStatus)
    history: tuple[HistoryEntry, ...] = ()
    failover: FailoverRequest | None = None
    failover_revision: int = 0
    config_raw: str = ""
    config_problem: str = ""  # why the stored config was read in part, or not at all
    sync: SyncState | None = None
    sync_revision: int = 0
    failsafe: Mapping[str, str] | None = None  # the ``failsafe`` key: member name -> REST API URL
    events_raw: str = ""  # the ``events`` key (the failover timeline, ``core.events``), parsed on demand
    availability_raw: str = ""  # the ``availability`` key (``core.availability``), parsed on demand
    handover: Handover | None = None  # a planned switchover waiting for the poolers (``core.poolers``)
    poolers: Mapping[str, PoolerRecord] = field(default_factory=dict)
    rollout: Rollout | None = None  # a rolling restart (``core.rollout``)
    backup: Backup | None = None  # the last or running base backup (``core.backup``)
    revision: int = 0

    @property
    def max_timeline(self) -> int:
        tls = [m.timeline for m in self.members.values()] + [self.status.timeline]
        tls += [h.timeline for h in self.history]
        return max(tls, default=0)


def parse_cluster(kvs: Iterable[Any], prefix: str, revision: int,
                  parse_config: Any = None) -> ClusterView:
    """Build a ClusterView from the key/values under ``prefix`` (``/pgha/<scope>/``).

    ``parse_config`` turns the raw config JSON into a DynamicConfig and a warning; an invalid
    stored config yields ``config=None`` and its problem, so that the node keeps its last good
    settings and says why.
    """
    out: dict[str, Any] = {"revision": revision}
    members: dict[str, Member] = {}
    member_leases: dict[str, int] = {}
    poolers: dict[str, PoolerRecord] = {}
    for kv in kvs:
        rel = kv.key[len(prefix):]
        if rel == "initialize":
            out["initialize"], out["initialize_revision"] = kv.value, kv.mod_revision
        elif rel == "sync":
            out["sync"], out["sync_revision"] = SyncState.from_json(kv.value), kv.mod_revision
        elif rel == "failover":
            out["failover"], out["failover_revision"] = FailoverRequest.from_json(kv.value), kv.mod_revision
        elif rel == "config":
            out["config_revision"], out["config_raw"] = kv.mod_revision, kv.value
            out["config"], out["config_problem"] = _config(kv.value, parse_config)
        elif rel == "leader":
            out["leader"], out["leader_lease"], out["leader_revision"] = kv.value, kv.lease, kv.mod_revision
        elif rel == "status":
            out["status"] = LeaderStatus.from_json(kv.value)
        elif rel == "history":
            out["history"] = parse_history(kv.value)
        elif rel == "failsafe":
            out["failsafe"] = parse_failsafe(kv.value)
        elif rel == "events":
            out["events_raw"] = kv.value
        elif rel == "availability":
            out["availability_raw"] = kv.value
        elif rel == "rollout":
            out["rollout"] = Rollout.from_json(kv.value, kv.mod_revision)
        elif rel == "backup":
            out["backup"] = Backup.from_json(kv.value, kv.mod_revision)
        elif rel == "handover":
            out["handover"] = Handover.from_json(kv.value, kv.create_revision)
        elif rel.startswith("poolers/"):
            poolers[rel[len("poolers/"):]] = PoolerRecord.from_json(rel[len("poolers/"):], kv.value)
        elif rel.startswith("members/"):
            name = rel[len("members/"):]
            members[name] = Member.from_json(name, kv.value)
            member_leases[name] = kv.lease
    return ClusterView(members=members, member_leases=member_leases, poolers=poolers, **out)


def _config(raw: str, parse_config: Any) -> tuple[ClusterSettings | None, str]:
    if parse_config is None:
        return None, ""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return None, f"config in etcd: not valid JSON ({exc})"
    try:
        parsed, warning = parse_config(data)
        return parsed, warning
    except Exception as exc:  # noqa: BLE001 - a bad stored config must not stop the HA loop
        return None, str(exc) or type(exc).__name__


def parse_failsafe(raw: str) -> Mapping[str, str] | None:
    """Patroni's format, ``{"name": "api_url", ...}``; anything else counts as no key (Patroni
    too ignores a key it cannot read)."""
    try:
        d = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        return None
    return d


def parse_history(raw: str) -> tuple[HistoryEntry, ...]:
    try:
        rows = json.loads(raw)
        return tuple(HistoryEntry(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows)
    except (json.JSONDecodeError, TypeError, ValueError, IndexError):
        return ()


def history_json(entries: Iterable[HistoryEntry]) -> str:
    return json.dumps([[h.timeline, h.lsn, h.reason, h.time, h.leader] for h in entries])
