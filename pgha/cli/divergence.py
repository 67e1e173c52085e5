"""``pgha divergence [N]``: what the last (or N-th last) rewind of an old primary discarded, as
the divergence ledger recorded it before the rewind (``pgha.agent.divergence``)."""

from __future__ import annotations

import json

import click

from pgha.cli.context import Target, cluster_options
from pgha.core import events


@click.command()
@cluster_options
@click.argument("n", type=click.IntRange(min=1), default=1)
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def divergence(target: Target, n: int, fmt: str) -> None:
    """What an old primary's diverged WAL held when it rejoined: transactions, commit times, rows
    per table. N: the N-th most recent (default 1).

    Example: pgha divergence -c node.yml
    """
    found = [ev for ev in events.parse(target.view().events_raw) if ev.kind == "divergence" and ev.detail]
    if not found:
        raise click.ClickException("no divergence recorded: no old primary has discarded WAL since the timeline began")
    if n > len(found):
        raise click.ClickException(f"only {len(found)} divergence(s) recorded")
    ev = found[-n]
    d = dict(ev.detail or {})
    if fmt == "json":
        click.echo(json.dumps({"node": ev.node, **d}))
        return
    click.echo(f"{ev.node} discarded {d['transactions']} transaction(s), {d['bytes']} bytes of WAL "
               f"({d['fork_lsn']}..{d['end_lsn']} on timeline {d['timeline']}) when it rejoined {d['leader']}")
    if d.get("first_commit"):
        click.echo(f"  commits from {d['first_commit']} to {d['last_commit']} UTC")
    for table, c in sorted(d.get("tables", {}).items()):
        click.echo(f"  {table}: {c['insert']} inserted, {c['update']} updated, {c['delete']} deleted")
    click.echo(f"  report on {ev.node}: {d.get('file', '-')}")
