"""``pgha agent -c node.yml``: run the HA agent beside the local Postgres."""

from __future__ import annotations

import asyncio
import gc
import resource

import click

from pgha.cli.main import load


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(), help="node YAML file")
@click.option("--validate-config", is_flag=True, help="check the file and exit")
@click.pass_context
def agent(ctx: click.Context, config_path: str, validate_config: bool) -> None:
    """Run the HA agent beside the local Postgres.

    Example: pgha agent -c /etc/pgha/node.yml
    """
    cfg = load(config_path)
    if validate_config:
        click.echo(f"{config_path}: valid (scope {cfg.scope}, node {cfg.name})")
        return
    from pgha import log
    from pgha.agent.service import Agent

    lc = cfg.log
    log.setup(cfg.scope, cfg.name, lc.level, lc.format, lc.dir, lc.file_size, lc.file_num)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # more room for REST clients; the API still keeps well below it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    # What start-up built lives as long as the process: keep the collector from walking it again.
    gc.collect()
    gc.freeze()
    adopted = ctx.obj.get("adopted") if isinstance(ctx.obj, dict) else None
    asyncio.run(Agent(cfg, config_path, adopted).run())
