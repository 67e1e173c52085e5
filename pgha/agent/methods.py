"""Making a data directory by the operator's methods: a replica by ``create_replica_methods``
(tried in order: ``basebackup``, ``pgbackrest`` from the archive's repository, or a command), the
first node of a cluster by ``bootstrap.method`` (initdb; ``pgbackrest``: a backup recovered to a
target; or a command, then optionally a recovery with ``recovery_conf``)."""

from __future__ import annotations

import logging
import shlex
import time
from typing import Any

from pgha import errors as e
from pgha.config.model import CustomMethod, LocalConfig
from pgha.config.replication import RestoreFrom
from pgha.core import archive
from pgha.core.settings import ArchiveSettings
from pgha.postgres.controller import PostgresController

log = logging.getLogger(__name__)


def argv(method: CustomMethod, fixed: list[str]) -> list[str]:
    """The command line, with Patroni's parameters unless ``no_params``."""
    out = shlex.split(method.command)
    if not method.no_params:
        out += [*fixed, *(f"--{k}={v}" for k, v in method.params.items())]
    return out


async def run(postgres: PostgresController, name: str, method: CustomMethod, fixed: list[str]) -> None:
    """Fill the data directory with ``method``'s command, run as the Postgres OS user."""
    if not method.keep_data:
        postgres.wipe()
    postgres.runas.make_private_dir(postgres.data_dir)
    command = argv(method, fixed)
    log.info("making the data directory with method %s: %s", name, shlex.join(command))
    await postgres.runas.run(command, timeout=24 * 3600)
    if postgres.data_dir_empty():
        raise e.PostgresError(f"{command[0]} exited 0 but left {postgres.data_dir} without a data directory")
    postgres.forget_origin()


async def from_repository(postgres: PostgresController, archive: ArchiveSettings | None) -> None:
    """A standby restored from the pgBackRest repository (the newest backup, then the archive),
    which then streams from the leader: no base backup read from the primary."""
    if archive is None or not archive.pgbackrest_stanza:
        raise e.PostgresError("the pgbackrest method needs the archive section with pgbackrest: {stanza: ...}")
    postgres.wipe()
    postgres.runas.make_private_dir(postgres.data_dir)
    config = [f"--config={archive.pgbackrest_config}"] if archive.pgbackrest_config else []
    await postgres.runas.run(["pgbackrest", *config, f"--stanza={archive.pgbackrest_stanza}",
                              f"--pg1-path={postgres.data_dir}", "--type=standby", "--log-level-console=warn",
                              "restore"], timeout=24 * 3600)
    postgres.forget_origin()


async def create_replica(local: LocalConfig, postgres: PostgresController, leader: str, host: str, port: int,
                         archive: ArchiveSettings | None = None) -> str:
    """Make this node's data directory from ``leader`` by the first method that works; returns
    its name. Raises PostgresError naming every method's failure when none does."""
    failures = []
    pg = local.postgresql
    connstring = f"postgres://{pg.authentication.replication.username}@{host}:{port}/postgres"
    for name in pg.create_replica_methods:
        t0 = time.monotonic()
        try:
            if name == "basebackup":
                await postgres.basebackup(host, port)
            elif name == "pgbackrest" and name not in pg.replica_methods:
                await from_repository(postgres, archive)
            else:
                await run(postgres, name, pg.replica_methods[name],
                          [f"--scope={local.scope}", "--role=replica", f"--datadir={pg.data_dir}",
                           f"--connstring={connstring}"])
            log.info("replica created from %s with method %s in %.1f s", leader, name, time.monotonic() - t0)
            return name
        except (TimeoutError, e.PostgresError, OSError) as exc:
            log.warning("replica creation method %s failed: %s", name, exc)
            failures.append(f"{name}: {exc}")
    raise e.PostgresError("every replica creation method failed (" + "; ".join(failures) + ")")


async def bootstrap(local: LocalConfig, postgres: PostgresController) -> None:
    """Make the first data directory by ``bootstrap.method`` (initdb, a backup in the pgBackRest
    repository, or a command); ``recovery`` says how to recover it before it becomes the primary."""
    b = local.bootstrap
    if b.method == "initdb":
        await postgres.initdb(b.initdb)
    elif b.method == "pgbackrest" and b.method not in b.methods and b.pgbackrest is not None:
        await from_backup(postgres, b.pgbackrest)
    else:
        await run(postgres, b.method, b.methods[b.method], [f"--scope={local.scope}", f"--datadir={local.postgresql.data_dir}"])


def recovery(local: LocalConfig) -> dict[str, Any]:
    """What the first data directory recovers with before it opens as the primary: a command
    method's ``recovery_conf``, or the repository's WAL up to ``bootstrap.pgbackrest``'s target."""
    b = local.bootstrap
    if b.method == "pgbackrest" and b.method not in b.methods and b.pgbackrest is not None:
        src = b.pgbackrest
        # Only for the recovery: postgresql.conf is rewritten when the node starts as the primary,
        # so no target is left behind to stop a later standby's replay.
        return {"restore_command": archive.pgbackrest(src.stanza, src.config or "", 'archive-get %f "%p"'),
                "recovery_target_timeline": "latest", **src.target.recovery()}
    method = b.methods.get(b.method)
    return dict(method.recovery_conf or {}) if method is not None else {}


async def from_backup(postgres: PostgresController, src: RestoreFrom) -> None:
    """The files of a backup from the repository, with no recovery settings: pgha writes those
    (``recovery``) into postgresql.conf rather than leaving them in postgresql.auto.conf."""
    postgres.wipe()
    postgres.runas.make_private_dir(postgres.data_dir)
    config = [f"--config={src.config}"] if src.config else []
    log.info("restoring the first data directory from pgbackrest stanza %s (%s)", src.stanza,
             f"backup {src.set}" if src.set else "the newest backup")
    await postgres.runas.run(["pgbackrest", *config, f"--stanza={src.stanza}", f"--pg1-path={postgres.data_dir}",
                              "--type=none", *([f"--set={src.set}"] if src.set else []), "--log-level-console=warn",
                              "restore"], timeout=24 * 3600)
    postgres.forget_origin()
