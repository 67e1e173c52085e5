"""``pgha convert-config``: a Patroni YAML file rewritten as pgha's native config."""

from __future__ import annotations

import click
import yaml
from pydantic import ValidationError

from pgha import errors as e
from pgha.config import patroni
from pgha.config.load import describe, parse_yaml, read_text
from pgha.config.model import LocalConfig


@click.command("convert-config")
@click.argument("path", type=click.Path(dir_okay=False))
def convert_config(path: str) -> None:
    """Print the pgha config for a Patroni config file, with a comment for each change.

    pgha also runs a node from the Patroni file as it is (pgha agent -c patroni.yml); this shows
    what it reads. Keys pgha does not support are refused by name.

    Example: pgha convert-config /etc/patroni/patroni.yml > /etc/pgha/node.yml
    """
    try:
        data = parse_yaml(read_text(path, path), path) or {}
        if not isinstance(data, dict):
            raise e.ConfigError(f"{path}: the top level must be a mapping")
        native, notes = patroni.convert(data, path)
        try:
            LocalConfig.model_validate(native)
        except ValidationError as exc:
            raise e.ConfigError(describe(exc, f"{path} (converted)", native)) from exc
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"# pgha config converted from the Patroni config {path}")
    for note in notes:
        click.echo(f"# - {note}")
    click.echo(yaml.safe_dump(native, sort_keys=False), nl=False)
