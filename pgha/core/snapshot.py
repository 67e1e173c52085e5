"""The immutable input of one HA decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgha.core import lease
from pgha.core.cluster import ClusterView
from pgha.core.jobs import Busy
from pgha.core.settings import ClusterSettings, NodeTags


@dataclass(frozen=True)
class PgState:
    """The local Postgres as observed at the start of the loop.

    ``primary_on_timeline`` is set while the data directory may hold WAL the cluster never saw:
    it last ran as a writable primary on that timeline. It is cleared once the directory was
    rewound or re-cloned from a leader. ``following`` names the member whose WAL we stream.
    """

    data_dir_empty: bool = True
    sysid: str | None = None
    running: bool = False
    in_recovery: bool = False
    timeline: int = 0
    lsn: int = 0  # primary: current position; replica: max(received, replayed)
    replayed_lsn: int = 0
    streaming: bool = False
    following: str | None = None
    primary_on_timeline: int | None = None
    handover_lsn: int | None = None  # where we stopped when we handed over in a switchover
    rewound_onto: int | None = None  # the leader's timeline pg_rewind last brought this directory onto
    down_since: float | None = None
    start_failed_at: float | None = None  # when a start last ended with the postmaster exiting (not a timeout)
    last_streaming_at: float | None = None
    stalled_since: float | None = None  # a running standby not streaming from whom it follows, since when
    replica_lsns: Mapping[str, int] = field(default_factory=dict)  # primary: live write position per standby
    sync_setting: str = ""  # synchronous_standby_names as Postgres runs with it
    sync_confirmed: frozenset[str] = frozenset()  # primary: standbys Postgres reports as sync/quorum
    pending_restart: bool = False  # a changed parameter waits for a restart (pg_settings)
    logical_slots: Mapping[str, int] = field(default_factory=dict)  # logical slots here: confirmed position
    idle_physical_slots: frozenset[str] = frozenset()  # physical slots here that no walsender uses
    wal_level: str = ""  # as Postgres runs with it ("": not known)
    postmaster_alive: bool = False  # the postmaster process lives (answering or not)
    unresponsive: bool = False  # it lives but this look got no answer within its deadline (hung?)
    hung_since: float | None = None  # since the first look without an answer; kept until it answers again
    started_at: float | None = None  # when the postmaster started (epoch s)
    sessions: int = -1  # client sessions other than the agent's (-1: not known)

    @property
    def start_failed_since_down(self) -> bool:
        """A start since Postgres went down ended with the postmaster exiting."""
        down, failed = self.down_since, self.start_failed_at
        return down is not None and failed is not None and failed >= down

    @property
    def writable(self) -> bool:
        return self.running and not self.in_recovery

    @property
    def role(self) -> str:
        """primary | replica | stopped | uninitialized, as Postgres itself runs."""
        if self.running:
            return "replica" if self.in_recovery else "primary"
        return "uninitialized" if self.data_dir_empty else "stopped"


@dataclass(frozen=True)
class Snapshot:
    """Everything ``decide`` may look at. ``now`` is the node's monotonic clock in seconds.

    ``cluster`` is the last view read from etcd and ``dcs_ok`` says whether it was read in this
    loop. ``lease_valid_until`` is when our lease can first expire on the etcd side, measured on our
    clock from the moment the last successful keepalive was sent (None: no live lease).
    ``applied_parameters`` are the Postgres parameters last written and loaded (None: not known
    yet), ``chosen_sync`` the synchronous_standby_names this leader chose (None: none yet).
    """

    now: float
    name: str
    tags: NodeTags
    config: ClusterSettings
    cluster: ClusterView
    dcs_ok: bool
    pg: PgState
    lease_valid_until: float | None = None
    lease_renewed_at: float | None = None  # when the last successful renewal was sent
    lease_id: int | None = None  # our etcd lease (None: not modelled, as in some unit tests)
    own_leases: frozenset[int] | None = None  # every lease of this run and the one before (None: not modelled)
    started_at: float | None = None  # when this agent started (monotonic)
    address: tuple[str, int] | None = None  # our Postgres as members reach it (host, port)
    leader_lost_at: float | None = None
    failover_seen_at: float | None = None  # since when the current switchover request has been seen
    shutting_down: bool = False
    busy: Busy | None = None
    wall_now: float = 0.0  # epoch seconds, only for operator schedules
    restart_at: float | None = None  # epoch seconds: a restart was requested for then (0: now)
    reinit_requested: bool = False
    reload_requested: bool = False
    applied_parameters: Mapping[str, Any] | None = None
    chosen_sync: str | None = None
    fence_ok: bool = True  # False: the fence process could not be armed
    fence_problem: str | None = None  # the watchdog or port gate is required and unusable: never lead
    peer_positions: Mapping[str, int] = field(default_factory=dict)  # live answers to AskPeers
    peers_asked_at: float | None = None  # when those answers were asked for
    peers_asked: frozenset[str] = frozenset()  # whom that was
    peers_refused: frozenset[str] = frozenset()  # those whose hosts refused the connection: no agent runs there
    initialize_empty_since: float | None = None  # since when ``initialize`` was seen claimed but empty
    failsafe_asked_at: float | None = None  # primary: when the last round of failsafe confirmations was sent
    failsafe_confirmed_at: float | None = None  # ... and when the last round every member accepted was sent
    failsafe_ping: tuple[str, float] | None = None  # replica: who last asked us to confirm it, and when

    def holds_lease(self) -> bool:
        """True while our lease is alive with enough margin left to demote before it can expire."""
        return lease.holds(self.lease_valid_until, self.now, self.config, self.lease_renewed_at)

    def owns_key(self) -> bool:
        """The leader key names us and is bound to our lease: a key left by an earlier run of
        this agent (bound to its dead lease) is not ours until we take it over."""
        c = self.cluster
        return c.leader == self.name and (self.lease_id is None or c.leader_lease == self.lease_id)

    def is_leader(self) -> bool:
        """We own the leader key and our lease, by our own clock, is still good."""
        return self.owns_key() and self.holds_lease()
