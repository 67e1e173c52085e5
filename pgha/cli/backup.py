"""``pgha backup`` and ``pgha restore``: base backups taken by the cluster (``core.backup``) and
point-in-time recovery from the pgBackRest repository (``postgres.restore``)."""

from __future__ import annotations

import asyncio
import json
import time

import click

from pgha import errors as e
from pgha.cli.context import Target, cluster_options, resolve
from pgha.cli.main import load
from pgha.cli.rollout import _leader_api
from pgha.core import backup as rules
from pgha.core import pitr
from pgha.postgres.restore import restore as run_restore


@click.command()
@cluster_options
@click.option("--type", "kind", type=click.Choice(rules.TYPES), help="full, diff or incr (default: backup.type)")
@click.option("--from", "source", help="replica (default: a streaming replica, standby mode), primary, or a member")
@click.option("--no-wait", is_flag=True, help="return once the backup is asked for")
@click.option("--timeout", type=float, default=6 * 3600.0, show_default=True, help="seconds to wait for it")
def backup(target: Target, kind: str | None, source: str | None, no_wait: bool, timeout: float) -> None:
    """Take a pgBackRest base backup on a member the cluster picks (or you name).

    Example: pgha backup -c node.yml --type full --from replica
    """
    body = {k: v for k, v in (("type", kind), ("from", source)) if v}
    status, reply = target.api("POST", _leader_api(target.view()) + "/backup", body)
    message = reply.get("message") or reply.get("error") if isinstance(reply, dict) else reply
    if status >= 400:
        raise click.ClickException(f"backup refused ({status}): {message}")
    click.echo(message)
    if no_wait:
        return
    asked = reply["backup"]["requested_at"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = target.view().backup
        if b is None or b.requested_at != asked:
            raise click.ClickException("the backup key was replaced while waiting")
        if not b.running:
            if b.state != rules.DONE:
                raise click.ClickException(b.progress())
            click.echo(b.progress())
            return
        time.sleep(1.0)
    raise click.ClickException(f"no outcome within {timeout:.0f} s; follow it with GET /backup")


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(exists=True), envvar="PGHA_CONFIG",
              help="this host's node YAML (Postgres binaries, OS user, credentials, etcd)")
@click.option("--into", required=True, type=click.Path(), help="a fresh directory for the restored copy")
@click.option("--to", "to_time", help="recover to this time (ISO 8601 with a zone); default: the archive's end")
@click.option("--lsn", help="recover to this WAL position instead")
@click.option("--set", "backup_set", default="", help="restore this backup label (default: pgBackRest's choice)")
@click.option("--port", type=int, default=5499, show_default=True, help="the restored copy's port")
@click.option("--keep-running", is_flag=True, help="leave the restored copy running (else it is stopped)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def restore(config_path: str, into: str, to_time: str | None, lsn: str | None, backup_set: str, port: int,
            keep_running: bool, as_json: bool) -> None:
    """Restore the cluster's archive to a time or LSN into a fresh directory, and say which
    timeline the recovery followed and its last transaction.

    Example: pgha restore -c node.yml --to '2026-12-05T19:10:58+00:00' --into /var/tmp/pitr
    """
    local = load(config_path)
    try:
        target = pitr.Target.parse(to_time, lsn)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    config = resolve(config_path, None, None, "/pgha").view().config
    a = config.archive if config is not None else None
    if a is None or not a.pgbackrest_stanza:
        raise click.ClickException("the cluster's config has no archive section with pgbackrest: nothing to restore")
    try:
        done = asyncio.run(run_restore(local, a.pgbackrest_stanza, a.pgbackrest_config, into, target, port,
                                       backup_set, keep_running))
    except e.PostgresError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(done.body()))
        return
    click.echo(f"restored {done.data_dir} to {done.target} in {done.seconds:.1f} s: followed timeline "
               f"{done.followed_timeline} to {done.ended_at}, opened timeline {done.timeline}; last transaction "
               f"{done.last_transaction or 'none replayed'}" + (f"; running on port {port}" if keep_running else ""))
