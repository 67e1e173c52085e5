"""The operator commands: ``pgha list``, ``switchover`` and friends (``pgha agent`` is added by
``pgha.main``, so that no command here imports the agent)."""

from __future__ import annotations

import sys

import click

from pgha import __version__
from pgha import errors as e
from pgha.cli import cluster, operations
from pgha.config import load_local_config
from pgha.config.model import LocalConfig


def load(path: str) -> LocalConfig:
    try:
        return load_local_config(path)
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
@click.version_option(__version__, prog_name="pgha")
def main() -> None:
    """pgha: PostgreSQL high availability on etcd."""


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
