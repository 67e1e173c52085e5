"""Synchronous replication: which standbys the leader waits for, in which order the two places
that record it change, and who may be promoted (pure functions).

Safety rests on one ordering: a standby enters ``synchronous_standby_names`` before the ``sync``
key, and leaves the ``sync`` key before it leaves ``synchronous_standby_names``. So every node
listed in the key holds every acknowledged commit (mode on), or any ``quorum`` of them together
do (mode quorum), at every instant.
"""

from __future__ import annotations

import re

from pgha.core import failsafe
from pgha.core.actions import Action, SetSyncStandbys, WriteSyncState
from pgha.core.cluster import ClusterView, SyncState
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import Snapshot

_SETTING = re.compile(r"^\s*(?:(FIRST|ANY)\s+)?(\d+)\s*\((.*)\)\s*$", re.IGNORECASE)


def mode(config: ClusterSettings) -> str:
    if config.standby_cluster is not None:
        return "off"  # a standby cluster acknowledges no commits of its own
    m = config.synchronous_mode
    if m is True or m == "on":
        return "on"
    if m == "quorum":
        return "quorum"
    return "off"


def render(names: tuple[str, ...], sync_mode: str, count: int, strict: bool) -> str:
    """synchronous_standby_names for ``names``; '*' in strict mode with nobody, so commits wait."""
    if not names:
        return "*" if strict else ""
    quoted = ", ".join(f'"{n}"' for n in names)
    if sync_mode == "quorum":
        return f"ANY {min(count, len(names))} ({quoted})"
    return f"FIRST {len(names)} ({quoted})"


def candidates(s: Snapshot) -> list[str]:
    """Streaming standbys fit to be synchronous, never ``nosync``: those already listed first (a
    standby reconnecting after a primary restart keeps its place while its record says it
    streams), then the others Postgres sees streaming, most advanced first. A standby that may
    not be promoted (``nofailover``) is chosen only when no promotable one streams: otherwise,
    once the primary died, the only node allowed to take over would be the one that may not."""
    key = s.cluster.sync
    listed = key.members if key is not None and key.leader == s.name else ()

    confirmed = failsafe.confirmed(s)

    def fit(name: str) -> bool:
        # Postgres' own pg_stat_replication is the live truth; a member record can be a loop old
        # (a standby that just reconnected still shows its previous role there).
        m = s.cluster.members.get(name)
        if m is None:
            # After a failsafe outage longer than ttl every lease expired and every record is gone
            # until its agent's next loop; one that confirmed us within ttl and still streams keeps
            # its place, rather than the key and Postgres swapping standbys for nothing.
            return name in listed and name in confirmed and name in s.pg.replica_lsns
        if name == s.name or m.tags.get("nosync"):
            return False
        return name in s.pg.replica_lsns or (name in listed and m.role == "replica" and m.state == "streaming")

    kept = [n for n in listed if fit(n)]
    new = sorted((n for n in s.pg.replica_lsns if n not in kept and fit(n)),
                 key=lambda n: (-s.pg.replica_lsns[n], n))
    promotable = [n for n in kept + new if n not in s.cluster.members or not s.cluster.members[n].nofailover]
    ordered = promotable or kept + new
    r = s.cluster.rollout
    if r is not None:
        # A standby drained for a rolling restart goes last: commits should not wait on a
        # standby about to restart, when another can hold them.
        ordered = [n for n in ordered if not r.draining(n)] + [n for n in ordered if r.draining(n)]
    return ordered


def unrecorded(view: ClusterView) -> bool:
    """Nothing records who holds the acknowledged commits: no ``sync`` key and no last primary in
    ``status`` (the key space was wiped). Then any member may hold them; the most advanced that
    answers is the one to take over."""
    return view.sync is None and not view.status.leader


def stale(view: ClusterView) -> bool:
    """The ``sync`` key was written by an earlier leader than the last one to claim ``status``
    (a promoting node claims it before it promotes): it says nothing about what that one
    acknowledged."""
    key, last = view.sync, view.status.leader
    return key is not None and bool(last) and key.leader != last


def commit_holders(view: ClusterView, config: ClusterSettings, me: str) -> tuple[str, ...]:
    """The members among which the most advanced holds every acknowledged commit (synchronous
    modes): the listed synchronous standbys, or every member (``me`` included, whose record may
    not be back yet) when nothing is recorded."""
    if mode(config) == "off":
        return ()
    if view.sync is not None:
        return () if stale(view) else view.sync.members
    return tuple(sorted({*view.members, me})) if unrecorded(view) else ()


def failover_impossible(view: ClusterView) -> str | None:
    """Why no node could take over from the leader in synchronous mode, or None."""
    key = view.sync
    if key is None or not key.members or key.leader != view.leader:
        return None
    present = [view.members[n] for n in key.members if n in view.members]
    if present and all(m.nofailover for m in present):
        return (f"failover is impossible: the only synchronous standby ({', '.join(key.members)}) "
                "is tagged nofailover")
    return None


def postgres_quorum(setting: str) -> tuple[tuple[str, ...], int]:
    """The named standbys Postgres waits for and how many of them must confirm each commit, in
    Postgres' whole grammar: ``[FIRST|ANY] n (names)``, or a bare list of names, which means
    FIRST 1 (as Patroni writes it: a cluster migrated from Patroni starts from its setting).
    '*' names nobody in particular."""
    text = (setting or "").strip()
    m = _SETTING.match(text)
    if m is None and (not text or "(" in text):
        return (), 0
    listed, need = (m.group(3), int(m.group(2))) if m is not None else (text, 1)
    names = tuple(n.strip().strip('"') for n in listed.split(",") if n.strip())
    return ((), 0) if "*" in names else (names, need)


def guarantee(members: tuple[str, ...], setting: str) -> int:
    """How many of ``members`` are certain to hold each commit acknowledged under ``setting``."""
    names, q = postgres_quorum(setting)
    if not members or not names:
        return 0  # asynchronous, or '*': nobody in particular
    return max(0, q - sum(1 for n in names if n not in members))


def _claim(members: tuple[str, ...], setting: str) -> WriteSyncState:
    g = guarantee(members, setting)
    return WriteSyncState(members if g > 0 else (), g)


def leader_actions(s: Snapshot) -> tuple[Action, ...]:
    """The next step towards the wanted synchronous standbys; each step keeps the key's claim
    within what Postgres guarantees, before and after it."""
    sync_mode = mode(s.config)
    count = s.config.synchronous_node_count
    fit = candidates(s)
    desired = tuple(fit if sync_mode == "quorum" else fit[:count])
    key = s.cluster.sync
    current = s.pg.sync_setting
    if key is None or key.leader != s.name:
        # A new leader starts from nobody: only standbys it confirmed itself become promotable.
        return (WriteSyncState((), 0),)
    listed, claimed = key.members, key.quorum
    if claimed > guarantee(listed, current) or (listed and claimed == 0):
        return (_claim(listed, current),)
    keep = tuple(n for n in listed if n in desired)
    if keep != listed:
        return (_claim(keep, current),)  # out of the key before out of Postgres
    target = keep + tuple(n for n in desired if n not in keep)
    setting = render(target, sync_mode, count, s.config.synchronous_mode_strict)
    if current != setting:
        if claimed > guarantee(keep, setting):
            return (_claim(keep, setting),)  # lower the claim before Postgres waits for others
        return (SetSyncStandbys(setting),)  # into Postgres before into the key
    confirmed = tuple(n for n in target if n in s.pg.sync_confirmed)
    wanted = _claim(confirmed, current)
    if (wanted.members, wanted.quorum) != (listed, claimed):
        return (wanted,)
    return ()


def listing_problem(view: ClusterView, config: ClusterSettings, name: str) -> str | None:
    """Why, in synchronous mode, the recorded state rules ``name`` out of taking over whatever
    its position; None if it may (for a peer too: a replica never defers to one ruled out)."""
    if mode(config) == "off":
        return None
    key, last, old = view.sync, view.status.leader, stale(view)
    if last == name or key is not None and key.leader == name and not old:
        return None  # the last primary itself holds every commit it acknowledged
    if key is None and unrecorded(view):
        return None  # the most advanced member that answers takes over (see commit_holders)
    if key is None or not key.members or old:
        if config.synchronous_mode_strict:
            return "no synchronous standby is recorded, and strict mode promotes only one"
        return None  # non-strict mode fell back to asynchronous replication
    if name not in key.members:
        return f"not a synchronous standby (synchronous standbys: {', '.join(key.members)})"
    return None


def promotion_problem(s: Snapshot) -> str | None:
    """Why, in synchronous mode, this node may not take over; None if it may."""
    listed = listing_problem(s.cluster, s.config, s.name)
    if listed is not None:
        return listed
    key = s.cluster.sync
    if (mode(s.config) == "off" or key is None or not key.members or stale(s.cluster)
            or s.name in (s.cluster.status.leader, key.leader)):
        return None  # listed, and nothing to prove (see listing_problem)
    need = len(key.members) - key.quorum + 1
    alive = [n for n in key.members if n in s.cluster.members]
    if len(alive) < need:
        return (f"only {len(alive)} of {len(key.members)} synchronous standbys answer; {need} are needed "
                f"to prove this node holds every acknowledged commit")
    ahead = sorted(n for n in alive if n != s.name and s.cluster.members[n].lsn > s.pg.lsn)
    if ahead:
        return f"synchronous standby {', '.join(ahead)} has received more: only the most advanced may take over"
    return None


def proof_problem(s: Snapshot) -> str | None:
    """Whether the live answers prove this node holds every acknowledged commit: enough listed
    members answer (quorum mode: N - quorum + 1, counting ourselves) and none of them has
    received more than we have. None when proven."""
    key = s.cluster.sync
    if key is None and unrecorded(s.cluster):
        # Nothing says how many must answer: those that do must not be ahead of us.
        holders = commit_holders(s.cluster, s.config, s.name)
        key = SyncState("", holders, len(holders))
    if key is None or not key.members or s.name not in key.members:
        return None
    need = max(1, len(key.members) - key.quorum + 1)
    answered = [n for n in key.members if n == s.name or n in s.peer_positions]
    if len(answered) < need:
        return (f"only {len(answered)} of {len(key.members)} synchronous standbys answered; {need} are needed "
                "to prove this node holds every acknowledged commit")
    ahead = sorted(n for n in answered if n != s.name and s.peer_positions[n] > s.pg.lsn)
    if ahead:
        return f"synchronous standby {', '.join(ahead)} has received more: only the most advanced may take over"
    return None


def writes_acknowledged(view: ClusterView, config: ClusterSettings, setting: str, streaming: frozenset[str]) -> bool:
    """Whether a primary with this setting can acknowledge commits now (strict mode can block)."""
    if mode(config) == "off" or not setting:
        return True
    if setting.strip() == "*":
        return bool(streaming)
    names, need = postgres_quorum(setting)
    return sum(1 for n in names if n in streaming) >= need
