"""``pgha restart --rolling``: ask the cluster for a rolling restart and follow it. The cluster
carries it out (``core.rollout``); this command only starts, follows or aborts it, so closing
the terminal stops nothing."""

from __future__ import annotations

import time
from typing import Any

import click

from pgha.cli.context import Target
from pgha.core.cluster import ClusterView


def _leader_api(view: ClusterView) -> str:
    m = view.members.get(view.leader or "")
    if m is None or not m.api_url:
        raise click.ClickException("the cluster has no leader to ask")
    return m.api_url


def start(target: Target, members: tuple[str, ...], body: dict[str, Any], wait: bool) -> None:
    view = target.view()
    status, reply = target.api("POST", _leader_api(view) + "/rollout", {**body, "members": list(members) or None})
    message = reply.get("message") or reply.get("error") if isinstance(reply, dict) else reply
    if status >= 400:
        raise click.ClickException(f"rolling restart refused ({status}): {message}")
    click.echo(message)
    if status == 202 and wait:
        follow(target)


def abort(target: Target) -> None:
    status, reply = target.api("DELETE", _leader_api(target.view()) + "/rollout")
    message = reply.get("message") or reply.get("error") if isinstance(reply, dict) else reply
    if status >= 400:
        raise click.ClickException(f"{message} ({status})")
    click.echo(message)


def follow(target: Target, every: float = 1.0) -> None:
    """Print each phase change until the rollout ends; Ctrl-C leaves it running."""
    seen: dict[str, str] = {}
    try:
        while True:
            r = target.view().rollout
            if r is None:
                raise click.ClickException("the rollout key is gone")
            for m in r.members:
                if seen.get(m) != r.phase(m):
                    seen[m] = r.phase(m)
                    click.echo(f"{time.strftime('%H:%M:%S')} {m}: {r.phase(m)}")
            if not r.running:
                if r.state != "done":
                    raise click.ClickException(f"rolling restart {r.state}: {r.reason}")
                click.echo("rolling restart done")
                return
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo("\nthe rolling restart goes on in the cluster: `pgha list` shows it, "
                   "`pgha restart --rolling --abort` stops it after the member in progress")


def after_change(target: Target, timeout: float | None = None) -> None:
    """After a configuration change: once the members have applied it (a loop each), roll a
    restart through those it left pending one."""
    view = target.view()
    loop = view.config.loop_wait if view.config is not None else 10
    end = time.monotonic() + (timeout if timeout is not None else 2 * loop + 5)
    while time.monotonic() < end:
        time.sleep(1.0)
        if any(m.pending_restart for m in target.view().members.values()):
            time.sleep(loop + 1.0)  # the others apply it within a loop of their own
            return start(target, (), {"pending": True}, True)
    click.echo("no member needs a restart: the change was applied by a reload")
