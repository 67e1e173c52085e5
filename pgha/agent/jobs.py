"""The long jobs on the local Postgres (bootstrap, clone, rewind, restart, reinitialize, start),
each run beside the loop by the executor, each doing exactly what its action says. A job either
finishes and returns its ``Result`` or raises; it never decides what to do instead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgha import errors as e
from pgha.agent.lease import LeaseKeeper
from pgha.config.model import LocalConfig
from pgha.core import actions as a
from pgha.core import parameters
from pgha.core.snapshot import Snapshot
from pgha.dcs.store import ClusterStore
from pgha.postgres.controller import PostgresController

log = logging.getLogger("pgha")


@dataclass(frozen=True)
class Result:
    """What an action changed that the next snapshot must know. ``None`` fields: unchanged."""

    ok: bool = True
    applied_parameters: Mapping[str, Any] | None = None
    chosen_sync: str | None = None
    restart_done: bool = False
    reinit_started: bool = False
    reload_done: bool = False
    exit: bool = False
    wake: bool = False  # decide again at once: the action changed what a decision depends on
    peer_positions: Mapping[str, int] | None = None  # answers to AskPeers


def member_addr(s: Snapshot, name: str) -> tuple[str, int]:
    m = s.cluster.members.get(name)
    if m is None or not m.host:
        raise e.PostgresError(f"member {name} has no address in etcd")
    return m.host, m.port


class PostgresJobs:
    def __init__(self, local: LocalConfig, store: ClusterStore, postgres: PostgresController,
                 keeper: LeaseKeeper) -> None:
        self.local = local
        self.store = store
        self.postgres = postgres
        self.keeper = keeper
        self.restarts = 0

    def hba(self, s: Snapshot) -> list[str] | None:
        return self.local.postgresql.pg_hba or s.config.postgresql.pg_hba

    def configure(self, s: Snapshot, primary: bool, follow: str | None, chosen_sync: str | None) -> dict[str, Any]:
        """Write postgresql.conf and pg_hba.conf: as a primary, or as a standby streaming from
        ``follow`` (from nobody when None)."""
        params = parameters.wanted(s.config, chosen_sync)
        if primary:
            self.postgres.write_config(params, self.hba(s), None, None, False)
        else:
            addr = member_addr(s, follow) if follow else None
            self.postgres.write_config(params, self.hba(s), addr, follow if addr else None,
                                       s.config.postgresql.use_slots)
        return params

    async def start(self, s: Snapshot, primary: bool, follow: str | None, chosen_sync: str | None = None) -> Result:
        if primary:
            self.postgres.make_primary()
        else:
            self.postgres.make_standby()
        sync_names = chosen_sync if chosen_sync is not None else s.chosen_sync
        params = self.configure(s, primary, follow, sync_names)
        timeout = s.config.primary_start_timeout if primary else 3600
        await self.postgres.start(max(timeout, 10))
        return Result(applied_parameters=params)

    async def bootstrap(self, act: a.InitializeCluster, s: Snapshot) -> Result:
        """We hold the claimed ``initialize`` key: make the cluster, or undo and give the key up."""
        try:
            if act.run_initdb:
                log.info("won the bootstrap race: running initdb")
                await self.postgres.initdb(self.local.bootstrap.initdb)
            # bootstrap's own commits must not wait for standbys not yet cloned
            result = await self.start(s, True, None, chosen_sync="")
            await self.postgres.create_roles()
            sysid = await self.postgres.system_identifier()
            if self.keeper.lease is None or not sysid:
                raise e.PostgresError("no lease or no system identifier after initdb")
            if not await self.store.acquire_leader(self.keeper.lease, s.config.retry_timeout):
                raise e.PostgresError("could not take the leader key after bootstrap")
            await self.store.finish_initialize(sysid, self.local.bootstrap.dcs.model_dump(mode="json"),
                                               s.config.retry_timeout)
            log.info("bootstrapped cluster %s (system identifier %s): acquired leader key", self.local.scope, sysid)
            return Result(applied_parameters=result.applied_parameters, chosen_sync="")
        except BaseException:
            log.error("bootstrap failed: giving up the initialize key")
            with contextlib.suppress(e.PghaError, OSError):
                await self.postgres.stop("immediate")
                if act.run_initdb:
                    self.postgres.wipe()
                await self.store.cancel_initialize(s.config.retry_timeout)
            raise

    async def clone(self, act: a.CloneFrom, s: Snapshot) -> Result:
        host, port = member_addr(s, act.leader)
        t0 = time.monotonic()
        log.info("cloning from %s with pg_basebackup", act.leader)
        await self.postgres.basebackup(host, port)
        result = await self.start(s, False, act.leader)
        log.info("cloned from %s in %.1f s: streaming as a replica", act.leader, time.monotonic() - t0)
        return result

    async def rewind(self, act: a.Rewind, s: Snapshot) -> Result:
        host, port = member_addr(s, act.leader)
        await self.postgres.stop("fast")
        if act.use_pg_rewind:
            try:
                log.info("rewinding from %s with pg_rewind", act.leader)
                if not await self.postgres.rewind(host, port, act.leader_timeline):
                    log.info("%s has not checkpointed its new timeline yet: retrying the rewind", act.leader)
                    await asyncio.sleep(act.retry_after)
                    return Result(ok=False)  # nothing started: no on_start callback
            except e.PostgresError as exc:
                if _unreachable(exc):
                    # Re-cloning would wipe this directory and fail the same way: keep it.
                    log.warning("pg_rewind could not reach %s (%s): starting as its replica, retrying later", act.leader, exc)
                    return await self.start(s, False, act.leader)
                log.warning("pg_rewind failed (%s): re-cloning from %s", exc, act.leader)
                await self.postgres.basebackup(host, port)
        else:
            log.info("use_pg_rewind is off: re-cloning from %s", act.leader)
            await self.postgres.basebackup(host, port)
        result = await self.start(s, False, act.leader)
        log.info("rejoined as a replica of %s", act.leader)
        return result

    async def resume(self, s: Snapshot) -> Result:
        await self.postgres.stop("fast")
        result = await self.start(s, True, None)
        log.info("resumed as primary on timeline %d", s.pg.timeline)
        return result

    async def restart(self, act: a.RestartPostgres, s: Snapshot) -> Result:
        t0 = time.monotonic()
        await self.postgres.stop("fast")
        result = await self.start(s, act.primary, act.follow)
        self.restarts += 1
        log.info("restarted postgres as %s in %.1f s", "primary" if act.primary else "replica", time.monotonic() - t0)
        return result

    async def reinitialize(self, act: a.Reinitialize, s: Snapshot) -> Result:
        host, port = member_addr(s, act.leader)
        log.info("reinitializing: wiping the data directory and cloning from %s", act.leader)
        await self.postgres.stop("immediate")
        await self.postgres.basebackup(host, port)
        result = await self.start(s, False, act.leader)
        log.info("reinitialized from %s", act.leader)
        return result


def _unreachable(exc: Exception) -> bool:
    """pg_rewind failed because the source did not answer, not because of the data."""
    text = str(exc).lower()
    return "could not connect" in text or "connection to server" in text or "timeout expired" in text
