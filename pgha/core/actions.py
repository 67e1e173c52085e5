"""What the agent must do, as values. The agent executes a decision's actions in order and
stops at the first that fails; the next loop decides again from what then is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgha.core.rollout import Rollout


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class InitializeCluster(Action):
    """Claim ``initialize`` with a create-only transaction; if won, initdb when ``run_initdb``,
    start as primary, take the leader key, store the system id and seed ``config`` from
    bootstrap.dcs. If lost, do nothing: the next loop clones. If a step after the claim fails:
    stop Postgres at once, remove what initdb made (only when ``run_initdb``) and give the
    ``initialize`` key up, so another node may try."""

    run_initdb: bool = True


@dataclass(frozen=True)
class ClaimInitialize(Action):
    """Create ``initialize`` holding ``sysid`` (create-only: a node with data never bootstraps a
    cluster anew), and seed ``config`` from bootstrap.dcs if it is missing too."""

    sysid: str


@dataclass(frozen=True)
class ReclaimInitialize(Action):
    """Delete an ``initialize`` claim that stayed empty (its winner died mid-bootstrap), only if
    it is still empty and unchanged since ``revision``; the race for it starts again."""

    revision: int


@dataclass(frozen=True)
class CloneFrom(Action):
    """pg_basebackup from ``leader`` into the empty data directory, then start as its replica."""

    leader: str


@dataclass(frozen=True)
class StartPostgres(Action):
    """Start Postgres. As a primary only when we hold the leader key; otherwise in recovery,
    streaming from ``follow`` (or from nobody: read-only and idle). ``timeout``: how long it may
    take to accept connections before the start is given up (None: ``primary_start_timeout`` for
    a primary); a leader restarting after a hang has only what is left of ttl."""

    primary: bool
    follow: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Demote(Action):
    """Make the local Postgres read-only now: stop it (``immediate`` when a lease is at stake,
    since a clean checkpoint could outlast the lease) and start it in recovery following
    ``follow``. Must finish before the lease can expire."""

    mode: str
    follow: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Rewind(Action):
    """Stop Postgres and bring the data directory onto ``leader``'s timeline: pg_rewind when
    ``use_pg_rewind`` (a failed rewind re-clones), else a re-clone; then start following it.
    When the leader's control file does not show ``leader_timeline`` yet (its checkpoint after
    promotion is still running), leave the directory as it is and try again ``retry_after``
    seconds later."""

    leader: str
    leader_timeline: int = 0
    use_pg_rewind: bool = True
    retry_after: float = 0.5


@dataclass(frozen=True)
class AcquireLeader(Action):
    """Create the leader key bound to our lease, only if no key exists (one transaction)."""

    reason: str = ""


@dataclass(frozen=True)
class TakeOverLeaderKey(Action):
    """The leader key names us but is bound to ``old_lease`` (an earlier run of this agent): move
    it onto our lease in one transaction that holds only if it still names us, is still bound to
    ``old_lease`` (so that lease is alive) and is unchanged since ``revision``. An agent restart
    then causes no failover."""

    old_lease: int
    revision: int


@dataclass(frozen=True)
class AskPeers(Action):
    """Ask ``members`` (their REST APIs, with a short timeout) for the WAL position each has
    received and flushed now; the answers arrive in the next snapshot as ``peer_positions``.
    Member records can be a loop old; a promotion in synchronous mode is proven on answers."""

    members: tuple[str, ...]


@dataclass(frozen=True)
class ConfirmFailsafe(Action):
    """As a primary cut off from etcd in failsafe mode: ask each of ``members`` (name, REST API
    URL) over ``POST /failsafe`` to confirm it sees this primary; the round counts only if every
    one accepts (``core.failsafe``)."""

    members: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Promote(Action):
    """Promote the local standby to a new timeline. Precondition: we hold the leader key."""


@dataclass(frozen=True)
class ResumeAsPrimary(Action):
    """Restart a standby that was itself the last primary on its timeline as primary again,
    without promotion, so the timeline does not change. Precondition: we hold the leader key."""


@dataclass(frozen=True)
class FollowLeader(Action):
    """Point the running standby's primary_conninfo at ``leader`` (the leader, or the member a
    cascading replica streams from) and reload; ``slot``: use our replication slot there (only the
    leader keeps slots for its replicas)."""

    leader: str
    slot: bool = True


@dataclass(frozen=True)
class FollowRemote(Action):
    """Standby leader: point the running standby at the standby_cluster source (primary_conninfo
    and/or restore_command) and reload."""


@dataclass(frozen=True)
class ReleaseLeader(Action):
    """Delete the leader key if it still names us. Only after Postgres stopped being writable."""

    reason: str = ""


@dataclass(frozen=True)
class KillPostgres(Action):
    """Stop a Postgres that does not answer (hung, or still starting when the key must go):
    SIGQUIT to the postmaster, then after ``grace`` seconds SIGKILL to the postmaster and to every
    process it started (each backend leads a session of its own, so a signal to the postmaster's
    process group misses them). SIGKILL ends a stopped process at once, and one blocked in I/O as
    soon as its call returns, before any acknowledgement can reach a client; it is never revoked,
    so what outlives the wait for it can never take a write. Before a ReleaseLeader that follows
    it, and before the restart in place that the crash rules start next."""

    reason: str
    grace: float = 1.0


@dataclass(frozen=True)
class StopPostgres(Action):
    """Stop Postgres in ``mode``; health checks stop calling it a primary before the stop begins."""

    mode: str = "fast"
    reason: str = ""


@dataclass(frozen=True)
class PublishLeaderStatus(Action):
    """As leader: keep one physical slot per member in ``slots`` and each permanent slot in
    ``permanent`` (dropping other inactive physical slots but those ``ignore_slots`` matches), then
    write ``status`` (name, timeline, WAL position, the permanent slots' positions)."""

    slots: frozenset[str] = frozenset()
    permanent: frozenset[str] = frozenset()
    failsafe: tuple[tuple[str, str], ...] | None = None  # the ``failsafe`` key's members (None: no key)
    logical: tuple[tuple[str, str, str], ...] = ()  # permanent logical slots: name, database, plugin
    retain: tuple[tuple[str, float], ...] = ()  # members for ``status``: present (0) or gone since (epoch s)


@dataclass(frozen=True)
class CopyLogicalSlots(Action):
    """As replica: copy each logical slot in ``names`` from ``leader`` (its state file, read over
    SQL) and restart Postgres once to load them: PostgreSQL 15 cannot create a logical slot on a
    standby. Precondition: the leader has them (their positions are published)."""

    leader: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class TendReplicaSlots(Action):
    """As replica, tend this node's slots: keep a copy of each permanent physical slot, advanced
    to the primary's position for it (``positions``: name and LSN pairs from ``status``), advance
    the logical copies, and drop ``drop``."""

    positions: tuple[tuple[str, int], ...]
    logical: tuple[tuple[str, str, int], ...] = ()  # existing logical copies to advance: name, database, LSN
    drop: tuple[str, ...] = ()  # idle physical slots left from a time as primary: they would hold WAL here


@dataclass(frozen=True)
class NameSwitchoverCandidate(Action):
    """Compare-and-set the ``failover`` key to name ``candidate`` (chosen by the leader for a
    request that named none), so that it alone waits for our final WAL position."""

    candidate: str


@dataclass(frozen=True)
class WriteRollout(Action):
    """Compare-and-set the ``rollout`` key to ``record`` (against ``record.revision``), only while
    the leader key is ours: the coordinator's next step of a rolling restart (``core.rolling``)."""

    record: Rollout


@dataclass(frozen=True)
class AnnounceHandover(Action):
    """Write the ``handover`` key (bound to our lease, only while the leader key is ours) saying
    we are about to hand over to ``candidate``: the poolers pause and answer under ``poolers/``
    before ``HandOver`` stops Postgres (``core.poolers``)."""

    candidate: str


@dataclass(frozen=True)
class CancelTransactions(Action):
    """Cancel the statements of client transactions open on the local primary (not our own
    sessions): the poolers' pause ran out its bound waiting for them. Each client gets an error and
    keeps its connection; at its rollback the pooler releases the server connection and can finish
    pausing. (The clean stop that follows would end these transactions and the connections with them.)"""

    reason: str = ""


@dataclass(frozen=True)
class HandOver(Action):
    """Planned switchover to ``candidate``: checkpoint, stop Postgres cleanly (the walsenders ship
    the shutdown checkpoint to the streaming replicas first), publish the final WAL position in
    ``status``, release the leader key, then start Postgres as a standby of ``candidate`` (it has
    our shutdown checkpoint, so streaming from it is safe at once). The candidate promotes once it
    has that position; whether a rewind is still needed is decided later from its history."""

    candidate: str


@dataclass(frozen=True)
class ClearDivergence(Action):
    """Forget that the data directory may hold WAL the cluster never saw: the leader's timeline
    forked after the point where we stopped (a clean switchover), so no rewind is needed."""

    reason: str = ""


@dataclass(frozen=True)
class ClearFailover(Action):
    """Delete the ``failover`` key (done, or impossible: ``reason``), and with it any ``handover``
    key, so that no pooler stays paused for a hand-over that is over."""

    reason: str = ""


@dataclass(frozen=True)
class RestartPostgres(Action):
    """Restart the local Postgres (an operator asked): as a primary when ``primary`` (the leader
    keeps its key), else as a replica of ``follow``. Clears the restart request."""

    primary: bool = False
    follow: str | None = None


@dataclass(frozen=True)
class ReloadConfig(Action):
    """Rewrite postgresql.conf for the current role with the wanted parameters and send SIGHUP;
    parameters that need a restart then show up as ``pending_restart``."""

    reason: str = ""


@dataclass(frozen=True)
class Reinitialize(Action):
    """Wipe the data directory and clone it again from ``leader`` (an operator asked). Clears
    the request."""

    leader: str


@dataclass(frozen=True)
class SetSyncStandbys(Action):
    """Set synchronous_standby_names to ``setting`` and reload. Adding a standby here must
    precede listing it in the ``sync`` key; removing it must follow its removal from the key."""

    setting: str


@dataclass(frozen=True)
class WriteSyncState(Action):
    """Compare-and-set the ``sync`` key to ``members`` (with ``quorum``) for this leader."""

    members: tuple[str, ...]
    quorum: int = 0


@dataclass(frozen=True)
class Exit(Action):
    """Revoke our lease (dropping the member key and any leader key) and end the agent."""


@dataclass(frozen=True)
class Decision:
    """What ``decide`` returns: the actions, in order, and why (the agent logs the note)."""

    actions: tuple[Action, ...]
    note: str
    recheck: float | None = None  # decide again within this many seconds (sooner than loop_wait)
