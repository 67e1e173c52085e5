"""Commands that read or change the cluster's state in etcd directly (they work with every agent
down): list, topology, history, show-config, edit-config, pause, resume, remove."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import tempfile
import time
from typing import Any

import click
import yaml

from pgha import errors as e
from pgha.cli import rollout
from pgha.cli.context import Target, cluster_options
from pgha.cli.table import render
from pgha.config.load import normalized, parse_dynamic_config
from pgha.core import events as core_events
from pgha.core.requests import merge_patch
from pgha.dcs.store import ClusterStore


def _list(target: Target, fmt: str, watch: float | None, topology: bool) -> None:
    while True:
        view = target.view()
        if watch:
            click.clear()
            click.echo(time.strftime("%Y-%m-%d %H:%M:%S"))
        click.echo(render(view, target.scope, fmt, topology))
        if not watch:
            return
        time.sleep(watch)


_FORMATS = click.Choice(["pretty", "json", "yaml", "tsv"])


@click.command("list")
@cluster_options
@click.option("-f", "--format", "fmt", type=_FORMATS, default="pretty", show_default=True)
@click.option("-W", "watch_default", is_flag=True, help="refresh every 2 seconds")
@click.option("-w", "--watch", type=float, help="refresh every N seconds")
def list_cmd(target: Target, fmt: str, watch_default: bool, watch: float | None) -> None:
    """Show the members: role, state, timeline and lag.

    Example: pgha list -c /etc/pgha/node.yml -f json
    """
    _list(target, fmt, watch or (2.0 if watch_default else None), topology=False)


@click.command()
@cluster_options
@click.option("-f", "--format", "fmt", type=_FORMATS, default="pretty", show_default=True)
@click.option("-W", "watch_default", is_flag=True, help="refresh every 2 seconds")
@click.option("-w", "--watch", type=float, help="refresh every N seconds")
def topology(target: Target, fmt: str, watch_default: bool, watch: float | None) -> None:
    """Like list, with replicas indented under the leader they stream from.

    Example: pgha topology -c node.yml
    """
    _list(target, fmt, watch or (2.0 if watch_default else None), topology=True)


@click.command()
@cluster_options
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json", "tsv"]), default="pretty")
@click.option("--events", is_flag=True, help="the failover timeline: every role change and its phases")
def history(target: Target, fmt: str, events: bool) -> None:
    """One row per promotion: timeline, LSN, reason, time, new leader. With --events, one row
    per role change (failover, switchover, hand-over, demotion) with each phase's duration.

    Example: pgha history -c node.yml --events
    """
    view = target.view()
    if events:
        recorded = core_events.parse(view.events_raw)
        if fmt == "json":
            click.echo(json.dumps([ev.to_dict() for ev in recorded]))
            return
        cols = ["Start", "Kind", "Node", "Previous", "TL", "Total", "Phases", "Reason"]
        rows: list[list[object]] = [
            [core_events.iso(ev.start), ev.kind, ev.node, ev.previous or "-", ev.timeline, f"{ev.total:.2f}s",
             ", ".join(f"{p.name} {p.seconds:.2f}s" for p in ev.phases), ev.reason] for ev in recorded]
    else:
        rows = [[h.timeline, h.lsn, h.reason, h.time, h.leader] for h in view.history]
        cols = ["TL", "LSN", "Reason", "Timestamp", "New Leader"]
    if fmt == "json":
        click.echo(json.dumps([dict(zip(cols, r)) for r in rows]))
        return
    if fmt == "tsv":
        click.echo("\n".join("\t".join(str(v) for v in r) for r in [list[object](cols), *rows]))
        return
    widths = [max([len(c)] + [len(str(r[i])) for r in rows]) for i, c in enumerate(cols)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    click.echo(sep)
    click.echo("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    click.echo(sep)
    for r in rows:
        click.echo("| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |")
    click.echo(sep)


def _stored_config(target: Target) -> tuple[dict[str, Any], int]:
    view = target.view()
    if not view.config_raw:
        raise click.ClickException(f"cluster {target.scope} has no dynamic configuration yet")
    loaded: dict[str, Any] = json.loads(view.config_raw)
    return loaded, view.config_revision


def _dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, default_flow_style=False, sort_keys=True)


@click.command("show-config")
@cluster_options
def show_config(target: Target) -> None:
    """Print the cluster's dynamic configuration as YAML.

    Example: pgha show-config -c node.yml
    """
    click.echo(_dump(_stored_config(target)[0]).rstrip())


def _assignment(text: str, option: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not key=value", param_hint=option)
    return key, yaml.safe_load(raw) if raw != "" else None


def _nested(path: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def store_config(target: Target, new: dict[str, Any], revision: int, source: str) -> None:
    """Validate like the agent does, then write with compare-and-set on ``revision``."""
    try:
        stored = normalized(new, source)
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if not target.run(lambda store: store.set_config(stored, revision, 5.0)):
        raise click.ClickException("the configuration changed meanwhile; nothing was stored, run the command again")


@click.command("edit-config")
@cluster_options
@click.option("-s", "--set", "sets", multiple=True, metavar="KEY=VALUE", help="e.g. -s ttl=20 -s postgresql.use_slots=false")
@click.option("-p", "--pg", "pgs", multiple=True, metavar="PARAM=VALUE", help="a postgresql parameter, e.g. -p work_mem=16MB")
@click.option("--apply", "apply_file", type=click.File("r"), help="merge a YAML file ('-' for stdin)")
@click.option("--force", is_flag=True, help="store without showing the diff and asking")
@click.option("--rolling", is_flag=True, help="then restart, one by one through the cluster, the members the "
              "change leaves pending a restart (reload-only changes restart nobody)")
def edit_config(target: Target, sets: tuple[str, ...], pgs: tuple[str, ...], apply_file: Any, force: bool,
                rolling: bool) -> None:
    """Change the dynamic configuration (validated, then stored with compare-and-set).

    Without -s/-p/--apply it opens $EDITOR. A null value deletes a key.

    Example: pgha edit-config -c node.yml -s loop_wait=5 -p max_connections=200 --force
    """
    current, revision = _stored_config(target)
    new = current
    for text in sets:
        key, value = _assignment(text, "-s")
        new = merge_patch(new, _nested(key.split("."), value))
    for text in pgs:
        key, value = _assignment(text, "-p")
        new = merge_patch(new, {"postgresql": {"parameters": {key: value}}})
    if apply_file is not None:
        patch = yaml.safe_load(apply_file.read()) or {}
        if not isinstance(patch, dict):
            raise click.ClickException("--apply: the file must hold a YAML mapping")
        new = merge_patch(new, patch)
    if not (sets or pgs or apply_file):
        new = _edit_in_editor(current)
    diff = list(difflib.unified_diff(_dump(current).splitlines(), _dump(new).splitlines(), "before", "after", lineterm=""))
    if not diff:
        click.echo("no changes")
        return
    try:
        parse_dynamic_config(new, "edit-config")
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if not force:
        click.echo("\n".join(diff))
        click.confirm("Apply these changes?", abort=True)
    store_config(target, new, revision, "edit-config")
    click.echo("configuration changed")
    if rolling:
        rollout.after_change(target)


def _edit_in_editor(current: dict[str, Any]) -> dict[str, Any]:
    editor = os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(_dump(current))
        path = f.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        with open(path) as f:
            edited = yaml.safe_load(f.read()) or {}
    except (subprocess.CalledProcessError, yaml.YAMLError) as exc:
        raise click.ClickException(f"edit failed: {exc}") from exc
    finally:
        os.unlink(path)
    if not isinstance(edited, dict):
        raise click.ClickException("the edited configuration must be a YAML mapping")
    return edited


def _set_pause(target: Target, paused: bool, wait: bool) -> None:
    current, revision = _stored_config(target)
    if bool(current.get("pause")) == paused:
        raise click.ClickException(f"cluster is {'already' if paused else 'not'} paused")
    store_config(target, {**current, "pause": paused}, revision, "pause")
    word = "maintenance mode" if paused else "normal operation"
    if wait:
        click.echo(f"waiting for every member to enter {word}", nl=False)
        end = time.monotonic() + 120
        while time.monotonic() < end:
            view = target.view()
            if view.members and all(m.pause == paused for m in view.members.values()):
                break
            click.echo(".", nl=False)
            time.sleep(0.5)
        else:
            raise click.ClickException(f"not every member reported {word} within 120 s")
        click.echo()
    click.echo(f"{'paused' if paused else 'resumed'}: {word}")


@click.command()
@cluster_options
@click.option("--wait", is_flag=True, help="wait until every member acknowledged")
def pause(target: Target, wait: bool) -> None:
    """Maintenance mode: agents take no automatic action; the leader keeps its key.

    Example: pgha pause -c node.yml --wait
    """
    _set_pause(target, True, wait)


@click.command()
@cluster_options
@click.option("--wait", is_flag=True, help="wait until every member acknowledged")
def resume(target: Target, wait: bool) -> None:
    """Leave maintenance mode.

    Example: pgha resume -c node.yml --wait
    """
    _set_pause(target, False, wait)


@click.command()
@cluster_options
@click.argument("cluster")
@click.option("--force", is_flag=True, help="remove even while agents are running")
def remove(target: Target, cluster: str, force: bool) -> None:
    """Delete the cluster's state from etcd (asks you to type the cluster name).

    Example: pgha remove -c node.yml demo
    """
    if cluster != target.scope:
        raise click.ClickException(f"the configuration is for cluster {target.scope}, not {cluster}")
    view = target.view()
    if view.members and not force:
        raise click.ClickException(f"agents are still running ({', '.join(sorted(view.members))}): stop them first, or use --force")
    typed = click.prompt(f"Remove all state of cluster {cluster} from etcd? Type the cluster name to confirm")
    if typed != cluster:
        raise click.ClickException("names do not match; nothing removed")

    async def wipe(store: ClusterStore) -> int:
        return await store.remove_cluster(5.0)

    n = target.run(wipe)
    click.echo(f"removed cluster {cluster} ({n} keys)")
