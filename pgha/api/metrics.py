"""GET /metrics: Prometheus text, every series labelled with scope and name. Values come from
``core.report.metric_values`` at scrape time; nothing is updated on the HA loop's path.

prometheus_client is imported at the first scrape, not at start: an agent nobody scrapes does
not carry it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pgha.api.context import CONTEXT
from pgha.core import events, patroni_metrics, report

if TYPE_CHECKING:
    from prometheus_client.core import Metric

_LABELS = ["scope", "name"]


def collect(current: Callable[[], report.NodeReport]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    r = current()
    labels = [r.scope, r.name]
    now, wall_now = time.monotonic(), time.time()
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for v in [*report.metric_values(r, now, wall_now), *patroni_metrics.values(r, now, wall_now)]:
        family = families.get(v.name)
        if family is None:
            names = [*_LABELS, *(k for k, _ in v.labels)]
            family = families[v.name] = (CounterMetricFamily(v.name, v.doc, labels=names) if v.counter
                                         else GaugeMetricFamily(v.name, v.doc, labels=names))
        family.add_metric([*labels, *(value for _, value in v.labels)], v.value)
    yield from families.values()
    yield _phases(r, labels)


def _phases(r: report.NodeReport, labels: list[str]) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily("pgha_failover_phase_seconds", "duration of each phase of the role changes "
                                   "this node recorded (pgha history --events)", labels=[*_LABELS, "phase"])
    for phase, (counts, total, n) in sorted(events.histogram(r.phase_seconds).items()):
        buckets = [(str(b), c) for b, c in zip(events.BUCKETS, counts)] + [("+Inf", n)]
        family.add_metric([*labels, phase], buckets, total)
    return family


def _registry(current: Callable[[], report.NodeReport]) -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    class ReportCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            return collect(current)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector())
    return registry


_REGISTRY = web.AppKey("metrics_registry", list[Any])


def install(app: web.Application) -> None:
    app[_REGISTRY] = []
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import generate_latest

    made = request.app[_REGISTRY]
    if not made:
        made.append(_registry(request.app[CONTEXT].report))
    return web.Response(body=generate_latest(made[0]), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
