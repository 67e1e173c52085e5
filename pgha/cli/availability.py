"""``pgha availability``: write availability as clients saw it (the leader's heartbeat), in
percent and nines, against an SLO's downtime budget, with the longest incidents and the role
changes that caused them."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import click

from pgha.cli.context import Target, cluster_options
from pgha.config.model import duration_seconds
from pgha.core import availability as av
from pgha.core import events

YEAR, MONTH = 365 * 86400, 30 * 86400


@click.command()
@cluster_options
@click.option("--since", default="7d", show_default=True, help="how far back: seconds, or 30min, 12h, 7d")
@click.option("--slo", type=click.FloatRange(0, 100, min_open=True, max_open=True),
              help="an availability target in percent, e.g. 99.99")
@click.option("--top", type=int, default=5, show_default=True, help="incidents to show")
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def availability(target: Target, since: str, slo: float | None, top: int, fmt: str) -> None:
    """Uptime in percent and nines, downtime budget used, top incidents.

    Example: pgha availability -c node.yml --since 30d --slo 99.99
    """
    try:
        back = duration_seconds(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    view = target.view()
    if not view.availability_raw:
        raise click.ClickException("no availability recorded yet (the leader records it with heartbeat_interval > 0)")
    interval = view.config.heartbeat_interval if view.config is not None else 1.0
    now = time.time()
    s = av.summarize(av.Ledger.from_json(view.availability_raw), now - back, now, interval)
    report = _report(s, slo, top, events.parse(view.events_raw))
    click.echo(json.dumps(report) if fmt == "json" else _pretty(report, since))


def _report(s: av.Summary, slo: float | None, top: int, recorded: tuple[events.Event, ...]) -> dict[str, Any]:
    worst = sorted(av.linked(s.incidents, recorded), key=lambda x: -x[0].down)[:top]
    out: dict[str, Any] = {
        "observed_seconds": round(s.observed, 3), "down_seconds": round(s.down, 3),
        "uptime_percent": round(100 * s.uptime, 6), "nines": None if math.isinf(s.nines) else round(s.nines, 3),
        "incidents": [{"start": events.iso(i.start), "seconds": round(i.down, 3),
                       "event": None if ev is None else {"kind": ev.kind, "node": ev.node, "start": events.iso(ev.start),
                                                         "total": round(ev.total, 3)}} for i, ev in worst]}
    if slo is not None:
        allowed = av.budget(slo, s.observed)
        out["slo"] = {"target_percent": slo, "allowed_seconds": round(allowed, 3),
                      "used_percent": round(100 * s.down / allowed, 2) if allowed > 0 else None,
                      "per_year_minutes": round(av.budget(slo, YEAR) / 60, 1),
                      "per_month_minutes": round(av.budget(slo, MONTH) / 60, 1)}
    return out


def _pretty(r: dict[str, Any], since: str) -> str:
    nines = "no downtime" if r["nines"] is None else f"{r['nines']:.2f} nines"
    lines = [(f"over the last {since} ({r['observed_seconds'] / 3600:.1f} h observed): "
              f"{r['uptime_percent']:.4f} % up, {nines}, {r['down_seconds']:.1f} s without writes")]
    if "slo" in r:
        b = r["slo"]
        used = "-" if b["used_percent"] is None else f"{b['used_percent']:.1f} %"
        lines.append(f"SLO {b['target_percent']} %: {b['allowed_seconds']:.1f} s allowed over this period, {used} used "
                     f"({b['per_month_minutes']} min/month, {b['per_year_minutes']} min/year)")
    for i in r["incidents"]:
        cause = "no role change recorded" if i["event"] is None else \
            f"{i['event']['kind']} to {i['event']['node']} ({i['event']['total']:.2f} s, pgha history --events)"
        lines.append(f"  {i['start']}  {i['seconds']:.2f} s down  {cause}")
    return "\n".join(lines)
