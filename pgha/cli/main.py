"""``pgha agent``, ``pgha list`` and friends."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from pgha import __version__
from pgha import errors as e
from pgha.config import load_local_config
from pgha.config.model import LocalConfig


def _load(path: str) -> LocalConfig:
    try:
        return load_local_config(path)
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(__version__, prog_name="pgha")
def main() -> None:
    """pgha: PostgreSQL high availability on etcd."""


@main.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(), help="node YAML file")
@click.option("--validate-config", is_flag=True, help="check the file and exit")
def agent(config_path: str, validate_config: bool) -> None:
    """Run the HA agent beside the local Postgres.

    Example: pgha agent -c /etc/pgha/node.yml
    """
    cfg = _load(config_path)
    if validate_config:
        click.echo(f"{config_path}: valid (scope {cfg.scope}, node {cfg.name})")
        return
    from pgha import log
    from pgha.agent import Agent

    log.setup(cfg.scope, cfg.name, cfg.log.level)
    asyncio.run(Agent(cfg).run())


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f}" if n else "0"


async def _members(cfg: LocalConfig) -> list[dict[str, Any]]:
    from pgha.agent import make_client
    from pgha.dcs.store import ClusterStore

    client = make_client(cfg)
    try:
        view = await ClusterStore(client, cfg.prefix, cfg.name).load(5.0)
    finally:
        await client.close()
    if view.initialize is None and not view.members:
        raise e.OperationRefused(f"cluster {cfg.scope} not found in etcd under {cfg.prefix}")
    rows = []
    top = max([view.status.lsn] + [m.lsn for m in view.members.values() if m.role == "primary"])
    for name in sorted(view.members):
        m = view.members[name]
        is_leader = name == view.leader
        lag = "" if is_leader or m.role != "replica" else _mb(max(0, top - m.replayed_lsn))
        rows.append({"Member": name, "Host": f"{m.host}:{m.port}",
                     "Role": "Leader" if is_leader else m.role.capitalize(), "State": m.state,
                     "TL": m.timeline, "Lag in MB": lag})
    return rows


@main.command("list")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json", "tsv"]), default="pretty")
def list_(config_path: str, fmt: str) -> None:
    """Show the cluster's members.

    Example: pgha list -c node.yml -f json
    """
    cfg = _load(config_path)
    try:
        rows = asyncio.run(_members(cfg))
    except e.PghaError as exc:
        raise click.ClickException(str(exc)) from exc
    cols = ["Member", "Host", "Role", "State", "TL", "Lag in MB"]
    if fmt == "json":
        click.echo(json.dumps(rows))
        return
    if fmt == "tsv":
        click.echo("\t".join(cols))
        for r in rows:
            click.echo("\t".join(str(r[c]) for c in cols))
        return
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in cols}
    line = "+" + "+".join("-" * (widths[c] + 2) for c in cols) + "+"
    click.echo(f"+ Cluster: {cfg.scope} ".ljust(len(line) - 1, "-") + "+")
    click.echo("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    click.echo(line)
    for r in rows:
        click.echo("| " + " | ".join(str(r[c]).ljust(widths[c]) for c in cols) + " |")
    click.echo(line)


if __name__ == "__main__":
    sys.exit(main())
