"""The node's read model: one frozen ``NodeReport`` that the agent publishes after each loop and
whenever a job starts, and pure functions that derive from it everything others read: health
verdict inputs, ``/status``, the member record and metric values.

Role, lag and the lease rule are each computed here once; the API, metrics and the member record
all go through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pgha.core import archive, failsafe, fitness, lease, schedule, sync
from pgha.core.archive import ArchiveState
from pgha.core.cluster import ClusterView, Member
from pgha.core.health import NodeHealth
from pgha.core.jobs import Busy
from pgha.core.settings import ClusterSettings
from pgha.core.snapshot import PgState


@dataclass(frozen=True)
class Counters:
    renewals: int = 0
    renewal_failures: int = 0
    max_renewal_gap: float = 0.0  # longest time between two successful lease renewals
    promotions: int = 0
    promotion_seconds: float = 0.0  # total
    last_promotion_seconds: float = 0.0
    demotions: int = 0
    restarts: int = 0
    reloads: int = 0
    fence_fired: int = 0


# The Patroni release whose REST bodies, roles and states pgha's match (``patroni.version``).
PATRONI_API = "4.1.5"


@dataclass(frozen=True)
class PgFacts:
    """Facts about the local Postgres that only the status body reports (Patroni's keys)."""

    server_version: int = 0
    postmaster_start_time: str | None = None
    replay_paused: bool = False
    pending_restart_reason: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    archive: ArchiveState | None = None  # the archiver, as the last look saw it
    stream_error: str = ""  # a standby that does not stream: its WAL receiver's last failure


@dataclass(frozen=True)
class NodeReport:
    """What this node knows about itself. Times are monotonic seconds; ``lease_valid_until`` and
    ``dcs_seen_at`` come live from the lease keeper, the rest from the last loop."""

    name: str
    scope: str
    host: str
    port: int
    api_url: str
    version: str
    tags: Mapping[str, Any]  # the node's tags, as published
    config: ClusterSettings
    view: ClusterView = field(default_factory=ClusterView)
    pg: PgState = field(default_factory=PgState)
    lease_valid_until: float | None = None
    lease_id: int | None = None
    dcs_seen_at: float | None = None
    busy: Busy | None = None
    note: str = ""
    counters: Counters = field(default_factory=Counters)
    restart_at: float | None = None  # epoch seconds
    loop_at: float = 0.0
    replication: tuple[Mapping[str, Any], ...] = ()  # the primary's pg_stat_replication rows
    replayed_timestamp: str | None = None
    fence_armed: bool = False  # the fence process stops Postgres unless the lease is renewed
    watchdog: str = "off"  # off | active (N s) | inactive | unusable: why
    port_gate: str = "off"  # off | open | closing | unusable: why
    facts: PgFacts = field(default_factory=PgFacts)
    callbacks: Mapping[str, tuple[int, int, float]] = field(default_factory=dict)  # action: runs, failures, seconds
    failsafe_confirmed_at: float | None = None  # primary: the last round every member confirmed was sent then
    failsafe_ping: tuple[str, float] | None = None  # replica: the primary that last asked us to confirm it, when
    phase_seconds: tuple[tuple[str, float], ...] = ()  # the phases of the role changes this node recorded
    heartbeat: tuple[float, float] | None = None  # leader: last heartbeat committed (epoch), seconds down (ledger)


def holds_leader(r: NodeReport, now: float) -> bool:
    """The leader key names us and our lease, by our own clock, is good with margin to spare; or,
    cut off from etcd in failsafe mode, every member confirms us (as Patroni's ``/primary``).

    Paused, a writable leader counts on its lease up to the instant it could expire: the margin
    is there to demote in time, and a paused node never demotes. Not beyond: Patroni answers 200
    by role alone while paused and cut off from etcd, which routes writes to two primaries once
    an operator fails over to another node during a partition."""
    if r.view.leader != r.name:
        return False
    if r.lease_id is not None and r.view.leader_lease == r.lease_id:
        if lease.holds(r.lease_valid_until, now, r.config, r.dcs_seen_at):
            return True
        if r.config.pause and r.pg.writable and r.lease_valid_until is not None and now < r.lease_valid_until:
            return True
    return failsafe_active(r, now) and r.pg.writable


def failsafe_active(r: NodeReport, now: float) -> bool:
    """A primary cut off from etcd that runs on its members' confirmations, or a member that
    confirmed a primary less than ttl ago (Patroni's ``failsafe_mode_is_active``)."""
    if not failsafe.enabled(r.config):
        return False
    confirmed = r.failsafe_confirmed_at
    if confirmed is not None and (r.dcs_seen_at is None or confirmed > r.dcs_seen_at):
        until = failsafe.held_until(confirmed, r.config)
        return until is not None and now < until
    return r.failsafe_ping is not None and now - r.failsafe_ping[1] < r.config.ttl


def standby_leader(r: NodeReport, now: float) -> bool:
    """The leader of a standby cluster: holds the key, replicates from the other cluster."""
    return holds_leader(r, now) and r.pg.in_recovery and r.config.standby_cluster is not None


def postgres_up(r: NodeReport) -> bool:
    """Postgres runs and no job is stopping, restarting or replacing it."""
    return r.pg.running and r.busy is None


def lag(r: NodeReport) -> int:
    """A replica's replay lag behind the last primary position (0 on a primary)."""
    return fitness.lag(r.view.status.lsn, r.pg.replayed_lsn) if r.pg.in_recovery else 0


def sync_standby(r: NodeReport) -> bool:
    """Listed in the ``sync`` key by the current leader: holds every acknowledged commit."""
    key = r.view.sync
    return (r.pg.in_recovery and key is not None and r.name in key.members
            and key.leader == r.view.leader and sync.mode(r.config) != "off")


def writes_acknowledged(r: NodeReport) -> bool:
    """Whether the primary can acknowledge commits now (strict synchronous mode can block)."""
    return sync.writes_acknowledged(r.view, r.config, r.pg.sync_setting, frozenset(r.pg.replica_lsns))


def _draining(r: NodeReport) -> bool:
    """Out of the read path for a rolling restart, until restarted: from then on it serves reads
    as soon as it streams, not a loop later when our view of the rollout says it is done."""
    ro = r.view.rollout
    restarted = ro is not None and (r.pg.started_at or 0.0) >= ro.since and ro.phase(r.name) == "restarting"
    return ro is not None and ro.draining(r.name) and not restarted


def health(r: NodeReport, now: float) -> NodeHealth:
    up = postgres_up(r)
    # A standby on an older timeline than the last primary's has not crossed the fork yet. One
    # whose WAL goes past the fork streams the old timeline from the new primary for a moment
    # before Postgres refuses the new one: it holds commits the cluster lost, and must not be
    # routed reads (seen in CI: /replica 200 for a diverged replica just before its rewind). The
    # new primary claims ``status`` on its old timeline before it promotes, and records the fork
    # in the history right after: a timeline the history says ended is not crossed either.
    ended = max((h.timeline for h in r.view.history), default=0)
    crossed = r.pg.timeline >= r.view.status.timeline and r.pg.timeline > ended
    return NodeHealth(
        holds_leader=holds_leader(r, now), pg_running=up, in_recovery=r.pg.in_recovery,
        streaming=up and r.pg.streaming and crossed, lag=lag(r), tags=r.tags, sync_standby=sync_standby(r),
        standby_leader=up and standby_leader(r, now),
        loop_age=now - r.loop_at, dcs_age=now - r.dcs_seen_at if r.dcs_seen_at is not None else float("inf"),
        ttl=r.config.ttl, draining=_draining(r))


def member_state(r: NodeReport) -> str:
    if r.busy is not None:
        return r.busy.state
    return "streaming" if r.pg.streaming else "running" if r.pg.running else "stopped"


def member(r: NodeReport, wall_now: float = 0.0) -> Member:
    """The record published under ``members/<name>`` (bound to our lease); ``wall_now`` (epoch
    seconds) judges the archiver (0: not judged)."""
    pg = r.pg
    return Member(
        name=r.name, role=pg.role, state=member_state(r), conn_url=f"postgres://{r.host}:{r.port}",
        api_url=r.api_url, host=r.host, port=r.port, timeline=pg.timeline, lsn=pg.lsn,
        replayed_lsn=pg.replayed_lsn, tags=dict(r.tags), version=r.version,
        pending_restart=pg.pending_restart, pending_restart_reason=r.facts.pending_restart_reason,
        scheduled_restart=schedule.iso(r.restart_at) if r.restart_at else "",
        pause=r.config.pause, note=r.note, following=pg.following or "" if pg.in_recovery else "",
        started_at=pg.started_at or 0.0 if pg.running else 0.0, sessions=pg.sessions if pg.running else -1,
        archive=archive_flag(r, wall_now) if wall_now else "",
        stream_error=r.facts.stream_error)


def archive_problem(r: NodeReport, wall_now: float) -> str | None:
    """Why ``/archive`` answers 503 (None: 200); no ``archive`` section: Postgres's own settings."""
    bound = r.config.archive.max_delay if r.config.archive is not None else 300.0
    facts = r.facts.archive if r.pg.running else None
    return archive.problem(facts, r.pg.role == "primary", wall_now, bound)


def archive_flag(r: NodeReport, wall_now: float) -> str:
    bound = r.config.archive.max_delay if r.config.archive is not None else 300.0
    return archive.flag(r.facts.archive if r.pg.running else None, r.pg.role == "primary", wall_now, bound)


def _sync_status(r: NodeReport) -> dict[str, Any]:
    mode = sync.mode(r.config)
    if mode == "off":
        return {}
    key = r.view.sync
    out: dict[str, Any] = {"synchronous_mode": mode + (" strict" if r.config.synchronous_mode_strict else ""),
                           "synchronous_standbys": list(key.members) if key else []}
    if r.pg.role == "primary":
        out["synchronous_standby_names"] = r.pg.sync_setting
        out["synchronous_fallback_async"] = r.pg.sync_setting == ""
    impossible = sync.failover_impossible(r.view)
    if impossible:
        out["failover_impossible"] = impossible
    return out


# pgha's jobs in Patroni's state vocabulary (Patroni's ``PostgresqlState``).
_PATRONI_STATES = {"bootstrapping": "initializing new cluster", "cloning": "creating replica",
                   "reinitializing": "creating replica", "starting": "starting", "resuming": "starting",
                   "restarting": "restarting", "stopping": "stopping", "demoting": "stopping",
                   "rewinding": "stopped"}


def patroni_state(state: str) -> str:
    """A member record's state (``cloning from n1``, ``switchover: …``) as Patroni names it."""
    if state in ("running", "streaming", "stopped", "crashed", "unknown"):
        return state
    word = state.split(":", 1)[0].split(" ", 1)[0]
    return _PATRONI_STATES.get(word, "running" if word == "switchover" else state)


def node_state(r: NodeReport) -> str:
    """This node's Postgres state in Patroni's words (the status body and the metrics)."""
    if r.pg.running:
        return "running"
    return patroni_state(r.busy.state) if r.busy else "stopped"


def status(r: NodeReport, now: float, wall_now: float) -> dict[str, Any]:
    """The body of ``/status`` and of every health endpoint."""
    pg, role = r.pg, r.pg.role
    out: dict[str, Any] = {
        "name": r.name, "scope": r.scope,
        "state": node_state(r),
        "role": "standby_leader" if standby_leader(r, now) else role, "timeline": pg.timeline,
        "leader": r.view.leader,
        "holds_leader_key": holds_leader(r, now), "server_version": r.facts.server_version,
        "postmaster_start_time": r.facts.postmaster_start_time,
        # Tools written for Patroni read patroni.version to tell which keys and states to expect.
        "patroni": {"version": PATRONI_API, "scope": r.scope, "name": r.name}, "pgha": {"version": r.version},
        "dcs_last_seen": int(wall_now - (now - r.dcs_seen_at)) if r.dcs_seen_at is not None else None,
        "pause": r.config.pause, "tags": dict(r.tags), "version": r.version,
        "database_system_identifier": pg.sysid, "note": r.note, "pending_restart": pg.pending_restart,
        "pending_restart_reason": {k: dict(v) for k, v in r.facts.pending_restart_reason.items()},
        "sync_standby": sync_standby(r),
        "fence": {"armed": r.fence_armed, "fired": r.counters.fence_fired, "watchdog": r.watchdog,
                  "port_gate": r.port_gate},
    }
    out.update(_sync_status(r))
    if failsafe_active(r, now):
        out["failsafe_mode_is_active"] = True  # as Patroni: present only while active
    if r.view.config_problem:
        out["config_problem"] = r.view.config_problem  # the config in etcd, read in part or not at all
    if r.busy is not None:
        out["activity"] = str(r.busy)  # pgha's own account of the job under way
    if r.restart_at:
        out["scheduled_restart"] = {"schedule": schedule.iso(r.restart_at, "auto")}
    if role == "primary":
        out["writes_acknowledged"] = writes_acknowledged(r)
        out["xlog"] = {"location": pg.lsn}
        out["replication"] = [dict(row) for row in r.replication]
    elif pg.running:
        out["xlog"] = {"received_location": pg.lsn, "replayed_location": pg.replayed_lsn,
                       "replayed_timestamp": r.replayed_timestamp, "paused": r.facts.replay_paused}
        out["replication_state"] = "streaming" if pg.streaming else "in archive recovery"
        out["lag"] = lag(r)
    if r.facts.archive is not None and r.facts.archive.mode != "off" and pg.running:
        out["archive"] = archive.body(r.facts.archive, wall_now)  # pgha's key: Patroni has none
    if r.facts.stream_error:  # set only while a running standby does not stream (``agent.service``)
        out["stream_error"] = r.facts.stream_error  # pgha's key: why this standby does not stream
    return out


@dataclass(frozen=True)
class MetricValue:
    name: str
    doc: str
    value: float
    counter: bool = False
    labels: tuple[tuple[str, str], ...] = ()  # beyond scope and name


def metric_values(r: NodeReport, now: float, wall_now: float) -> list[MetricValue]:
    pg, c = r.pg, r.counters
    primary = pg.role == "primary"
    replica = pg.role == "replica"
    g = MetricValue
    return [
        g("pgha_primary", "1 if this node holds the leader key and Postgres is a writable primary",
          float(holds_leader(r, now) and primary and postgres_up(r))),
        g("pgha_replica", "1 if Postgres runs in recovery", float(replica)),
        g("pgha_postgres_running", "1 if Postgres accepts connections", float(pg.running)),
        g("pgha_postgres_timeline", "current timeline", pg.timeline),
        g("pgha_xlog_location", "primary: current WAL position in bytes", pg.lsn if primary else 0),
        g("pgha_xlog_received_location", "replica: received WAL position", pg.lsn if replica else 0),
        g("pgha_xlog_replayed_location", "replica: replayed WAL position", pg.replayed_lsn if replica else 0),
        g("pgha_replication_lag_bytes", "bytes behind the last primary position", lag(r)),
        g("pgha_writes_acknowledged", "1 if this primary can acknowledge commits now (0 when strict "
          "synchronous mode is blocked, or not a primary)", float(primary and writes_acknowledged(r))),
        g("pgha_sync_fallback_async", "1 if synchronous mode fell back to asynchronous replication",
          float(primary and sync.mode(r.config) != "off" and pg.sync_setting == "")),
        g("pgha_sync_standby", "1 if this replica is a recorded synchronous standby", float(sync_standby(r))),
        g("pgha_pending_restart", "1 if a parameter change waits for a restart", float(pg.pending_restart)),
        g("pgha_paused", "1 if the cluster is in maintenance mode", float(r.config.pause)),
        g("pgha_config_problem", "1 if the config in etcd has keys this agent ignores or cannot read "
          "(it then runs on the last valid config; see config_problem in /patroni)", float(bool(r.view.config_problem))),
        g("pgha_dcs_last_seen_timestamp", "unix time of the last successful etcd exchange",
          wall_now - (now - r.dcs_seen_at) if r.dcs_seen_at is not None else 0.0),
        g("pgha_lease_renewals", "successful lease renewals", c.renewals, counter=True),
        g("pgha_lease_renewal_failures", "failed lease renewals", c.renewal_failures, counter=True),
        g("pgha_lease_renewal_max_gap_seconds", "longest interval between two successful lease renewals",
          c.max_renewal_gap),
        g("pgha_fence_armed", "1 if the fence stops Postgres unless the lease is renewed", float(r.fence_armed)),
        g("pgha_fence_fired", "times the fence stopped Postgres (the lease was not renewed in time)",
          c.fence_fired, counter=True),
        g("pgha_watchdog_active", "1 if a watchdog device is petted on each lease renewal",
          float(r.watchdog.startswith("active"))),
        g("pgha_promotions", "promotions performed by this node", c.promotions, counter=True),
        g("pgha_demotions", "demotions performed by this node", c.demotions, counter=True),
        g("pgha_promotion_seconds", "total time spent promoting", c.promotion_seconds, counter=True),
        g("pgha_last_promotion_seconds", "duration of the last promotion", c.last_promotion_seconds),
        *_callback_values(r),
        *_heartbeat_values(r),
        *_archive_values(r.facts.archive if pg.running else None, wall_now),
    ]


def _archive_values(a: ArchiveState | None, wall_now: float) -> list[MetricValue]:
    """From pg_stat_archiver and the archive status directory; none while archiving is off."""
    if a is None or a.mode == "off":
        return []
    g = MetricValue
    return [g("pgha_archive_archived", "WAL files archived (pg_stat_archiver.archived_count)", a.archived, True),
            g("pgha_archive_failed", "failed archive attempts (pg_stat_archiver.failed_count)", a.failed, True),
            g("pgha_archive_failing", "1 if the last archive attempt failed", float(a.failing)),
            g("pgha_archive_last_archived_age_seconds", "seconds since the last WAL file was archived (-1: never)",
              wall_now - a.last_archived_at if a.last_archived_at is not None else -1.0),
            g("pgha_archive_backlog", "completed WAL segments waiting to be archived (.ready)", a.backlog),
            g("pgha_archive_backlog_age_seconds", "how long the oldest waiting segment has waited",
              a.waiting_for(wall_now))]


def _heartbeat_values(r: NodeReport) -> list[MetricValue]:
    """Only the leader, which keeps the heartbeat, exports these (pgha availability)."""
    if r.heartbeat is None:
        return []
    last, down = r.heartbeat
    return [MetricValue("pgha_heartbeat_last_commit_timestamp", "unix time of the leader's last committed heartbeat",
                        last),
            MetricValue("pgha_write_unavailable_seconds", "seconds without a committed write in the availability "
                        "ledger (the last 400 days)", down)]


def _callback_values(r: NodeReport) -> list[MetricValue]:
    out = []
    for action, (runs, failures, seconds) in sorted(r.callbacks.items()):
        label = (("action", action),)
        out += [MetricValue("pgha_callback_runs", "callback scripts run, per action", runs, True, label),
                MetricValue("pgha_callback_failures", "callback scripts that failed or timed out, per action",
                            failures, True, label),
                MetricValue("pgha_callback_seconds", "time spent in callback scripts, per action", seconds, True,
                            label)]
    return out
