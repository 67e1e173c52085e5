"""The ``pgha`` command group. Each command's module is imported only when that command runs,
so ``pgha agent`` carries none of the operator commands (and they none of the agent)."""

from __future__ import annotations

import importlib
import sys

import click

from pgha import __version__
from pgha import errors as e
from pgha.config import load_local_config
from pgha.config.model import LocalConfig

# command name -> "module:attribute"
COMMANDS = {
    "agent": "pgha.agent.command:agent",
    "list": "pgha.cli.cluster:list_cmd",
    "topology": "pgha.cli.cluster:topology",
    "history": "pgha.cli.cluster:history",
    "show-config": "pgha.cli.cluster:show_config",
    "edit-config": "pgha.cli.cluster:edit_config",
    "pause": "pgha.cli.cluster:pause",
    "resume": "pgha.cli.cluster:resume",
    "remove": "pgha.cli.cluster:remove",
    "switchover": "pgha.cli.operations:switchover",
    "failover": "pgha.cli.operations:failover",
    "restart": "pgha.cli.operations:restart",
    "reload": "pgha.cli.operations:reload",
    "reinit": "pgha.cli.operations:reinit",
    "convert-config": "pgha.cli.convert:convert_config",
    "drill": "pgha.cli.drill:drill",
    "availability": "pgha.cli.availability:availability",
    "divergence": "pgha.cli.divergence:divergence",
    "pooler": "pgha.pooler.command:pooler",
    "backup": "pgha.cli.backup:backup",
    "restore": "pgha.cli.backup:restore",
}


def load(path: str) -> LocalConfig:
    try:
        return load_local_config(path)
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="pgha")
def main() -> None:
    """pgha: PostgreSQL high availability on etcd."""


@main.command()
def version() -> None:
    """Print pgha's version.

    Example: pgha version
    """
    click.echo(f"pgha {__version__}")


if __name__ == "__main__":
    sys.exit(main())
