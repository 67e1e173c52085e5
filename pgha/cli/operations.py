"""Commands that ask agents to act through their REST APIs: switchover, failover, restart,
reload, reinit. Each prints what happens as it happens and exits non-zero with the reason on
refusal."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import click

from pgha.cli import rollout
from pgha.cli.context import Target, cluster_options
from pgha.core import schedule
from pgha.core.cluster import ClusterView
from pgha.core.requests import check_failover, check_switchover


def _api_url(view: ClusterView, name: str) -> str:
    m = view.members.get(name)
    if m is None or not m.api_url:
        raise click.ClickException(f"no such member: {name} (members: {', '.join(sorted(view.members)) or 'none'})")
    return m.api_url


class StepPrinter(threading.Thread):
    """Prints each visible step of a leadership change by polling etcd until told to stop."""

    def __init__(self, target: Target, old: str | None) -> None:
        super().__init__(daemon=True)
        self.target, self.old = target, old
        self.t0 = time.monotonic()
        self.halt = threading.Event()
        self.seen: dict[str, float] = {}  # step -> seconds after the start

    def say(self, key: str, text: str) -> None:
        if key not in self.seen:
            self.seen[key] = time.monotonic() - self.t0
            click.echo(f"  {self.seen[key]:6.2f}s  {text}")

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                view = self.target.view()
            except click.ClickException:
                time.sleep(0.05)
                continue
            old = view.members.get(self.old or "")
            if old is not None and old.state.startswith("switchover"):
                self.say(old.state, f"{self.old}: {old.state.removeprefix('switchover: ')}")
            if self.old and view.leader != self.old:
                self.say("released", f"{self.old} released the leader key")
            new = view.leader
            if new and new != self.old:
                self.say("acquired", f"{new} took the leader key")
                m = view.members.get(new)
                if m is not None and m.role == "primary":
                    self.say("promoted", f"{new} promoted on timeline {m.timeline}")
                if old is not None and old.role == "replica" and old.state == "streaming":
                    self.say("following", f"{self.old} is streaming from {new}")
                    if "promoted" in self.seen:  # the old one may stream before the new one's record says primary
                        return
            time.sleep(0.05)


def _report(status: int, body: Any, ok: tuple[int, ...] = (200,)) -> Any:
    if status not in ok:
        reason = body.get("error") if isinstance(body, dict) else body
        raise click.ClickException(f"refused ({status}): {reason}")
    return body


def _schedule(scheduled: str | None) -> str | None:
    """``--scheduled`` as ISO 8601 with a timezone (local time when none is given); None: now."""
    if scheduled in (None, "", "now"):
        return None
    try:
        when = datetime.fromisoformat(scheduled)
        if when.tzinfo is None:
            when = when.astimezone()
        schedule.parse(when.isoformat(), "--scheduled", time.time())
    except (ValueError, OverflowError) as exc:
        raise click.ClickException(f"--scheduled {scheduled!r}: {exc}") from exc
    return when.isoformat()


@click.command()
@cluster_options
@click.option("--leader", "--primary", "leader", help="the current leader (checked)")
@click.option("--candidate", help="the replica to promote (default: the best one)")
@click.option("--scheduled", help="when, as ISO 8601 with a timezone (default: now)")
@click.option("--force", is_flag=True, help="do not ask")
def switchover(target: Target, leader: str | None, candidate: str | None, scheduled: str | None, force: bool) -> None:
    """Planned switchover: the candidate is promoted once it has all the leader wrote.

    Example: pgha switchover -c node.yml --candidate n2 --force
    """
    view = target.view()
    if view.leader is None:
        raise click.ClickException("the cluster has no leader: use pgha failover")
    if not force:
        leader = leader or click.prompt("Primary", default=view.leader)
        others = sorted(n for n in view.members if n != view.leader)
        candidate = candidate or click.prompt(f"Candidate {others}", default="", show_default=False) or None
        scheduled = scheduled or click.prompt("When should the switchover take place (e.g. 2026-11-26T14:00+00:00)",
                                              default="now")
    leader = leader or view.leader
    scheduled = _schedule(scheduled)
    config = view.config
    if config is not None:
        refusal = check_switchover(view, config, leader, candidate)
        if refusal is not None:
            raise click.ClickException(f"switchover refused: {refusal.reason}")
    if not force:
        click.confirm(f"Are you sure you want to switchover cluster {target.scope}, demoting current leader {leader}?",
                      abort=True)
    body: dict[str, Any] = {"leader": leader}
    if candidate:
        body["candidate"] = candidate
    if scheduled:
        body["scheduled_at"] = scheduled
        _report(*target.api("POST", _api_url(view, view.leader) + "/switchover", body), ok=(202,))
        click.echo(f"switchover from {leader} scheduled at {scheduled}")
        return
    click.echo(f"switchover from {leader} to {candidate or 'the best replica'}:")
    steps = StepPrinter(target, leader)
    steps.start()
    t0 = time.monotonic()
    status, reply = target.api("POST", _api_url(view, view.leader) + "/switchover", body)
    try:
        _report(status, reply)
        steps.join(15)
    finally:
        steps.halt.set()
    click.echo(_summary(reply["leader"], leader, steps.seen, time.monotonic() - t0))


def _summary(new: str, old: str, seen: dict[str, float], total: float) -> str:
    """The write gap (until the new leader took writes) and the rejoin, told apart."""
    parts = [f"switched over to {new}"]
    if "promoted" in seen:
        parts.append(f"writes went to {new} after {seen['promoted']:.2f} s")
    if "following" in seen:
        parts.append(f"{old} rejoined as its replica after {seen['following']:.2f} s")
    else:
        parts.append(f"{old} has not rejoined yet")
    return ", ".join(parts) + f" (request answered in {total:.2f} s)"


@click.command()
@cluster_options
@click.option("--candidate", required=True, help="the replica to promote")
@click.option("--force", is_flag=True, help="do not ask")
def failover(target: Target, candidate: str, force: bool) -> None:
    """Promote a chosen replica, even when the leader is unhealthy.

    Example: pgha failover -c node.yml --candidate n3
    """
    view = target.view()
    if view.config is not None:
        refusal = check_failover(view, view.config, candidate)
        if refusal is not None:
            raise click.ClickException(f"failover refused: {refusal.reason}")
    if not force:
        current = f", demoting current leader {view.leader}" if view.leader else ""
        click.confirm(f"Are you sure you want to failover cluster {target.scope} to {candidate}{current}?", abort=True)
    steps = StepPrinter(target, view.leader)
    steps.start()
    t0 = time.monotonic()
    status, reply = target.api("POST", _api_url(view, candidate) + "/failover", {"candidate": candidate})
    try:
        _report(status, reply)
    finally:
        steps.halt.set()
    click.echo(f"failed over to {reply['leader']} in {time.monotonic() - t0:.2f} s")


def _members_in_order(view: ClusterView, names: tuple[str, ...]) -> list[str]:
    chosen = list(names) or sorted(view.members)
    for n in chosen:
        if n not in view.members:
            raise click.ClickException(f"no such member: {n}")
    # replicas first, the leader last: the primary stays available while replicas restart
    return sorted(chosen, key=lambda n: (n == view.leader, n))


@click.command()
@cluster_options
@click.argument("members", nargs=-1)
@click.option("--role", type=click.Choice(["primary", "replica", "any"]), default="any")
@click.option("--pending", is_flag=True, help="only members whose settings need a restart")
@click.option("--scheduled", help="when, as ISO 8601 with a timezone")
@click.option("--force", is_flag=True, help="do not ask")
@click.option("--rolling", is_flag=True, help="let the cluster restart them one by one, switching over "
              "before the primary (clients see no error through the pooler)")
@click.option("--older-than-installed", is_flag=True, help="with --rolling: members whose running Postgres is "
              "older than the installed binary")
@click.option("--max-lag", help="with --rolling: how far behind (bytes, or 16MB) a restarted replica may be "
              "before the next member goes")
@click.option("--drain", type=float, help="with --rolling: seconds a replica may take to lose its read sessions")
@click.option("--abort", "abort_", is_flag=True, help="stop a rolling restart after the member in progress")
@click.option("--no-wait", is_flag=True, help="with --rolling: start it and return")
def restart(target: Target, members: tuple[str, ...], role: str, pending: bool, scheduled: str | None,
            force: bool, rolling: bool, older_than_installed: bool, max_lag: str | None, drain: float | None,
            abort_: bool, no_wait: bool) -> None:
    """Restart Postgres on members: replicas first, the primary last.

    Example: pgha restart -c node.yml --pending --force

    With --rolling the cluster does it (a closed terminal stops nothing): each replica drained
    from the read path, restarted and caught up, then a switchover, then the old primary.
    """
    if abort_:
        return rollout.abort(target)
    if rolling or older_than_installed:
        asked = {"pending": pending or None, "older_than_installed": older_than_installed or None,
                 "max_lag": int(max_lag) if max_lag and max_lag.isdigit() else max_lag, "drain": drain}
        return rollout.start(target, members, {k: v for k, v in asked.items() if v is not None}, not no_wait)
    view = target.view()
    order = _members_in_order(view, members)
    if role != "any":
        order = [n for n in order if (n == view.leader) == (role == "primary")]
    if pending:
        order = [n for n in order if view.members[n].pending_restart]
    if not order:
        click.echo("nothing to restart")
        return
    if not force:
        click.confirm(f"Restart {', '.join(order)}?", abort=True)
    body: dict[str, Any] = {}
    if pending:
        body["restart_pending"] = True
    if scheduled:
        body["schedule"] = scheduled
    failed = []
    for name in order:
        t0 = time.monotonic()
        status, reply = target.api("POST", _api_url(view, name) + "/restart", body)
        if status in (200, 202):
            what = "scheduled" if status == 202 else f"restarted in {time.monotonic() - t0:.1f} s"
            click.echo(f"{name}: {what}")
        else:
            failed.append(name)
            click.echo(f"{name}: failed ({status}): {reply.get('error') if isinstance(reply, dict) else reply}", err=True)
    if failed:
        raise click.ClickException(f"restart failed on {', '.join(failed)}")


@click.command()
@cluster_options
@click.argument("members", nargs=-1)
def reload(target: Target, members: tuple[str, ...]) -> None:
    """Reload Postgres configuration on members.

    Example: pgha reload -c node.yml n1 n2
    """
    view = target.view()
    for name in _members_in_order(view, members):
        _report(*target.api("POST", _api_url(view, name) + "/reload"))
        click.echo(f"{name}: reloaded")


@click.command()
@cluster_options
@click.argument("member")
@click.option("--force", is_flag=True, help="do not ask; reinitialize even while the member is busy")
def reinit(target: Target, member: str, force: bool) -> None:
    """Wipe a replica's data and clone it again from the primary (refused on the primary).

    Example: pgha reinit -c node.yml n3 --force
    """
    view = target.view()
    url = _api_url(view, member)
    if member == view.leader:
        raise click.ClickException(f"{member} is the leader; reinit is for replicas (switch over first)")
    if not force:
        click.confirm(f"Wipe and re-clone {member} from {view.leader}?", abort=True)
    _report(*target.api("POST", url + "/reinitialize", {"force": force}))
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < 3600:
        m = target.view().members.get(member)
        state = m.state if m else "unknown"
        if state != last:
            click.echo(f"  {time.monotonic() - t0:6.1f}s  {member}: {state}")
            last = state
        if state == "streaming" and time.monotonic() - t0 > 1:
            click.echo(f"{member} reinitialized and streaming in {time.monotonic() - t0:.1f} s")
            return
        time.sleep(0.2)
    raise click.ClickException(f"{member} is not streaming after an hour; see its log")
