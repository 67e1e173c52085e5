"""What the agent must do, as values. The agent executes a decision's actions in order and
stops at the first that fails; the next loop decides again from what then is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class InitializeCluster(Action):
    """Claim ``initialize`` with a create-only transaction; if won, initdb (unless the data
    directory already exists), start as primary, take the leader key, store the system id and
    seed ``config`` from bootstrap.dcs. If lost, do nothing: the next loop clones."""


@dataclass(frozen=True)
class CloneFrom(Action):
    """pg_basebackup from ``leader`` into the empty data directory, then start as its replica."""

    leader: str


@dataclass(frozen=True)
class StartPostgres(Action):
    """Start Postgres. As a primary only when we hold the leader key; otherwise in recovery,
    streaming from ``follow`` (or from nobody: read-only and idle)."""

    primary: bool
    follow: str | None = None


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
    """Stop Postgres, pg_rewind the data directory from ``leader`` (falling back to a re-clone
    when rewind is off or fails), then start following it."""

    leader: str


@dataclass(frozen=True)
class AcquireLeader(Action):
    """Create the leader key bound to our lease, only if no key exists (one transaction)."""

    reason: str = ""


@dataclass(frozen=True)
class Promote(Action):
    """Promote the local standby to a new timeline. Precondition: we hold the leader key."""


@dataclass(frozen=True)
class ResumeAsPrimary(Action):
    """Restart a standby that was itself the last primary on its timeline as primary again,
    without promotion, so the timeline does not change. Precondition: we hold the leader key."""


@dataclass(frozen=True)
class FollowLeader(Action):
    """Point the running standby's primary_conninfo at ``leader`` and reload."""

    leader: str


@dataclass(frozen=True)
class ReleaseLeader(Action):
    """Delete the leader key if it still names us. Only after Postgres stopped being writable."""

    reason: str = ""


@dataclass(frozen=True)
class StopPostgres(Action):
    mode: str = "fast"


@dataclass(frozen=True)
class PublishLeaderStatus(Action):
    """As leader: write ``status`` (name, timeline, WAL position) and keep one physical slot per
    other member when ``use_slots``."""

    slots: frozenset[str] = frozenset()


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
    """Delete the ``failover`` key (done, or impossible: ``reason``)."""

    reason: str = ""


@dataclass(frozen=True)
class RestartPostgres(Action):
    """Restart the local Postgres in its current role (an operator asked); the leader keeps its key."""


@dataclass(frozen=True)
class Reinitialize(Action):
    """Wipe the data directory and clone it again from ``leader`` (an operator asked)."""

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
