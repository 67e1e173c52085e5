"""The metric series Patroni exports (``patroni_*``, labelled scope and name), computed from the
node report, so that dashboards and alerts written for Patroni keep working beside pgha's own."""

from __future__ import annotations

import datetime

from pgha.core import report
from pgha.core.report import MetricValue, NodeReport

# Patroni's numeric codes for its Postgres states (``PostgresqlState.index``): they never change.
_STATE_CODES = {"initializing new cluster": 0, "creating replica": 4, "running": 5, "starting": 6,
                "restarting": 9, "stopping": 11, "stopped": 12, "crashed": 14}


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _semver(version: str) -> float:
    """4.1.5 -> 40105, as Patroni's ``patroni_version`` (zero-padded digits, read as a number)."""
    return float("".join(part.zfill(2) for part in version.split(".")))


def values(r: NodeReport, now: float, wall_now: float) -> list[MetricValue]:
    pg = r.pg
    primary, replica = pg.role == "primary", pg.role == "replica"
    state = report.node_state(r)
    g = MetricValue
    return [
        g("patroni_version", "Patroni semver without periods (the API level pgha's bodies match)",
          _semver(report.PATRONI_API)),
        g("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise", float(pg.running)),
        g("patroni_postmaster_start_time", "Epoch seconds since Postgres started",
          _epoch(r.facts.postmaster_start_time) if pg.running else 0.0),
        g("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise",
          float(report.holds_leader(r, now) and primary)),
        g("patroni_xlog_location", "Current location of the Postgres transaction log, 0 if this node is not the "
          "leader", float(pg.lsn if primary else 0)),
        g("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise",
          float(report.standby_leader(r, now))),
        g("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise", float(replica)),
        g("patroni_sync_standby", "Value is 1 if this node is a sync standby replica, 0 otherwise",
          float(report.sync_standby(r))),
        g("patroni_quorum_standby", "Value is 1 if this node is a quorum standby replica, 0 otherwise", 0.0),
        g("patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if "
          "this node is not a replica", float(pg.lsn if replica else 0)),
        g("patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if "
          "this node is not a replica", float(pg.replayed_lsn if replica else 0)),
        g("patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres transaction log, 0 if "
          "null", _epoch(r.replayed_timestamp) if replica else 0.0),
        g("patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise",
          float(replica and r.facts.replay_paused)),
        g("patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise",
          float(replica and pg.streaming)),
        g("patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from archive, 0 "
          "otherwise", float(replica and not pg.streaming)),
        g("patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise",
          float(r.facts.server_version if pg.running else 0)),
        g("patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked",
          float(not r.view.leader)),
        g("patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if inactive",
          float(report.failsafe_active(r, now))),
        g("patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 otherwise",
          float(pg.timeline if pg.running else 0)),
        g("patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted successfully",
          float(int(wall_now - (now - r.dcs_seen_at))) if r.dcs_seen_at is not None else 0.0),
        g("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise",
          float(pg.pending_restart)),
        g("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise", float(r.config.pause)),
        g("patroni_postgres_state", "Numeric representation of Postgres state", float(_STATE_CODES.get(state, 5))),
    ]
