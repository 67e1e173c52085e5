"""GET /metrics: Prometheus text, every series labelled with scope and name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pgha.agent import Agent


class AgentCollector(Collector):
    """Reads the agent's state at scrape time; nothing is updated on the HA loop's path."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        labels = ["scope", "name"]
        values = [a.cfg.scope, a.name]
        pg = a.pg_state
        h = a.health()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, value)
            return c

        yield gauge("pgha_primary", "1 if this node holds the leader key and Postgres is a writable primary",
                    1.0 if h.holds_leader and pg.running and not pg.in_recovery else 0.0)
        yield gauge("pgha_replica", "1 if Postgres runs in recovery", 1.0 if pg.running and pg.in_recovery else 0.0)
        yield gauge("pgha_postgres_running", "1 if Postgres accepts connections", 1.0 if pg.running else 0.0)
        yield gauge("pgha_postgres_timeline", "current timeline", pg.timeline)
        yield gauge("pgha_xlog_location", "primary: current WAL position in bytes", pg.lsn if not pg.in_recovery else 0)
        yield gauge("pgha_xlog_received_location", "replica: received WAL position", pg.lsn if pg.in_recovery else 0)
        yield gauge("pgha_xlog_replayed_location", "replica: replayed WAL position", pg.replayed_lsn if pg.in_recovery else 0)
        yield gauge("pgha_replication_lag_bytes", "bytes behind the last primary position", h.lag or 0)
        primary = pg.running and not pg.in_recovery
        yield gauge("pgha_writes_acknowledged", "1 if this primary can acknowledge commits now (0 when strict "
                    "synchronous mode is blocked, or not a primary)", 1.0 if primary and a.writes_acknowledged() else 0.0)
        yield gauge("pgha_sync_fallback_async", "1 if synchronous mode fell back to asynchronous replication",
                    1.0 if primary and a.config.synchronous_mode not in (False, "off") and pg.sync_setting == "" else 0.0)
        yield gauge("pgha_pending_restart", "1 if a parameter change waits for a restart", 1.0 if a.pending_restart else 0.0)
        yield gauge("pgha_paused", "1 if the cluster is in maintenance mode", 1.0 if a.config.pause else 0.0)
        yield gauge("pgha_dcs_last_seen_timestamp", "unix time of the last successful etcd exchange",
                    time.time() - (time.monotonic() - a.last_dcs_ok) if a.last_dcs_ok else 0.0)
        yield counter("pgha_lease_renewals", "successful lease renewals", a.counters["renewals"])
        yield counter("pgha_lease_renewal_failures", "failed lease renewals", a.counters["renewal_failures"])
        yield gauge("pgha_lease_renewal_max_gap_seconds", "longest interval between two successful lease renewals",
                    a.max_renewal_gap)
        yield counter("pgha_promotions", "promotions performed by this node", a.counters["promotions"])
        yield counter("pgha_demotions", "demotions performed by this node", a.counters["demotions"])
        yield counter("pgha_promotion_seconds", "total time spent promoting", sum(a.promotion_seconds))
        yield gauge("pgha_last_promotion_seconds", "duration of the last promotion",
                    a.promotion_seconds[-1] if a.promotion_seconds else 0.0)


def routes(agent: Agent) -> list[web.RouteDef]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    return [web.get("/metrics", metrics)]
