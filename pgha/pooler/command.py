"""``pgha pooler -c pooler.yml``: the watcher beside a PgBouncer and/or HAProxy.

The command is a small supervisor: the controller (``pooler.watcher``) runs as its child and is
started again at once whenever it dies, so that a crashed controller never leaves PgBouncer
paused (the new one resumes it, or ends the pause at the bound recorded by the old one).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time

import click

from pgha import errors as e

log = logging.getLogger("pgha.pooler")

CONFIG_ERROR = 2


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(), help="pooler YAML file")
@click.option("--validate-config", is_flag=True, help="check the file and exit")
def pooler(config_path: str, validate_config: bool) -> None:
    """Keep a PgBouncer (and/or HAProxy) pointed at the cluster's primary, paused across role changes.

    Example: pgha pooler -c /etc/pgha/pooler.yml
    """
    from pgha import log as logsetup
    from pgha.pooler.config import load_pooler_config

    try:
        cfg = load_pooler_config(config_path)
    except e.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if validate_config:
        click.echo(f"{config_path}: valid (scope {cfg.scope}, pooler {cfg.name}, drives {cfg.kind})")
        return
    logsetup.setup(cfg.scope, f"pooler {cfg.name}", cfg.log_level)
    sys.exit(supervise([sys.executable, "-m", "pgha.pooler.controller", config_path]))


def supervise(argv: list[str]) -> int:
    """Run ``argv`` until told to stop, starting it again whenever it dies."""
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        child = subprocess.Popen(argv)
        rc = child.wait()
        if stopping:
            return 0
        if rc == CONFIG_ERROR:
            return rc
        log.error("pooler controller (pid %d) exited with %s: starting it again", child.pid, rc)
        time.sleep(0.2)


def run_controller(config_path: str) -> int:
    from pgha import log as logsetup
    from pgha.pooler.config import load_pooler_config
    from pgha.pooler.watcher import Watcher

    try:
        cfg = load_pooler_config(config_path)
    except e.ConfigError as exc:
        print(exc, file=sys.stderr)
        return CONFIG_ERROR
    logsetup.setup(cfg.scope, f"pooler {cfg.name}", cfg.log_level)

    async def main() -> None:
        w = Watcher(cfg)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        log.info("following cluster %s in etcd (%s), driving %s", cfg.scope, ", ".join(cfg.etcd.hosts), cfg.kind)
        try:
            await w.run()
        except asyncio.CancelledError:
            log.info("stopping: ending any pause first")
        finally:
            await w.close()

    asyncio.run(main())
    return 0
