"""GET /metrics: Prometheus text, every series labelled with scope and name. Values come from
``core.report.metric_values`` at scrape time; nothing is updated on the HA loop's path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgha.api.context import CONTEXT
from pgha.core import report

_LABELS = ["scope", "name"]


class ReportCollector(Collector):
    def __init__(self, current: Callable[[], report.NodeReport]) -> None:
        self.current = current

    def collect(self) -> Iterator[Metric]:
        r = self.current()
        labels = [r.scope, r.name]
        for v in report.metric_values(r, time.monotonic(), time.time()):
            family = (CounterMetricFamily if v.counter else GaugeMetricFamily)(v.name, v.doc, labels=_LABELS)
            family.add_metric(labels, v.value)
            yield family


_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def install(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(app[CONTEXT].report))
    app[_REGISTRY] = registry
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[_REGISTRY]), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
