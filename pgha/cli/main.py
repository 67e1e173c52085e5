"""``pgha agent``, ``pgha list`` and friends."""

from __future__ import annotations

import asyncio
import sys

import click

from pgha import __version__
from pgha import errors as e
from pgha.cli import cluster, operations
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


@main.command()
def version() -> None:
    """Print pgha's version.

    Example: pgha version
    """
    click.echo(f"pgha {__version__}")


for _cmd in (cluster.list_cmd, cluster.topology, cluster.history, cluster.show_config, cluster.edit_config,
             cluster.pause, cluster.resume, cluster.remove, operations.switchover, operations.failover,
             operations.restart, operations.reload, operations.reinit):
    main.add_command(_cmd)


if __name__ == "__main__":
    sys.exit(main())
