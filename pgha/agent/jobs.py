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

import psycopg

from pgha import errors as e
from pgha.agent import divergence, methods
from pgha.agent.lease import LeaseKeeper
from pgha.config.model import LocalConfig
from pgha.core import actions as a
from pgha.core import archive, parameters, standby
from pgha.core.snapshot import Snapshot
from pgha.dcs.store import ClusterStore
from pgha.postgres import slots
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
    peers_asked: frozenset[str] = frozenset()  # ... whom it asked
    peers_refused: frozenset[str] = frozenset()  # ... and whose hosts refused the connection
    failsafe_round: tuple[float, bool] | None = None  # ConfirmFailsafe: when the round was sent, all accepted


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

    def configure(self, s: Snapshot, primary: bool, follow: str | None, chosen_sync: str | None,
                  slot: bool = True) -> dict[str, Any]:
        """Write postgresql.conf and pg_hba.conf: as a primary, or as a standby streaming from
        ``follow`` (from nobody when None), with our replication slot there when ``slot``."""
        params = parameters.wanted(s.config, chosen_sync)
        src = s.config.standby_cluster
        if primary:
            self.postgres.write_config(params, self.hba(s), None, None, False)
        elif follow == standby.REMOTE and src is not None:
            if src.restore_command:
                params = {**params, "restore_command": src.restore_command}
            self.postgres.write_config(params, self.hba(s), (src.host, src.port) if src.host else None,
                                       standby.REMOTE, False, slot=src.primary_slot_name)
        elif follow == standby.REMOTE:  # the section is gone: the caller promotes next
            self.postgres.write_config(params, self.hba(s), None, standby.REMOTE, False)
        else:
            addr = member_addr(s, follow) if follow else None
            # an old primary goes without the archive until its rejoin is settled (restore's why)
            self.postgres.write_config(params, self.hba(s), addr, follow if addr else None,
                                       s.config.postgresql.use_slots and slot,
                                       restore=self.postgres.disk.primary_on_timeline is None)
        return params

    async def settle_rejoin(self, s: Snapshot, reason: str) -> None:
        """An old primary rejoined without a rewind: forget that it led, and give it back the
        archive's restore_command, which it started without (``configure``)."""
        self.postgres.remember(primary_on_timeline=None, handover_lsn=None)
        log.info("rejoined without a rewind: %s", reason)
        if archive.parameters(s.config).get("restore_command"):
            following = s.pg.following
            self.configure(s, False, following, s.chosen_sync, slot=following == s.cluster.leader)
            await self.postgres.query("SELECT pg_reload_conf()")

    async def start(self, s: Snapshot, primary: bool, follow: str | None, chosen_sync: str | None = None,
                    timeout: float | None = None) -> Result:
        """``timeout``: as the action says (StartPostgres); None: the defaults below."""
        try:
            if primary:
                self.postgres.make_primary()
            else:
                self.postgres.make_standby()
            params = self.configure(s, primary, follow, chosen_sync if chosen_sync is not None else s.chosen_sync)
        except OSError:
            # Its files cannot be written (a full disk): a start that fails before it begins fails again.
            self.postgres.start_failed_at = time.monotonic()
            raise
        limit = timeout if timeout is not None else max(s.config.primary_start_timeout if primary else 3600, 10)
        # With an archive to restore from, WAL gone upstream may still arrive from there.
        archive = params.get("restore_command") or self.local.postgresql.parameters.get("restore_command")
        await self.postgres.start(limit, missing_wal_is_final=not primary and not archive)
        return Result(applied_parameters=params)

    async def bootstrap(self, act: a.InitializeCluster, s: Snapshot) -> Result:
        """We hold the claimed ``initialize`` key: make the cluster, or undo and give the key up."""
        try:
            src = s.config.standby_cluster
            if act.run_initdb:
                log.info("won the bootstrap race: making the data directory (%s)", self.local.bootstrap.method)
                if src is not None and src.host and self.local.bootstrap.method == "initdb":
                    log.info("standby cluster: cloning %s", standby.describe(src))
                    await self.postgres.basebackup(src.host, src.port)
                else:
                    await methods.bootstrap(self.local, self.postgres)
                recovery = methods.recovery(self.local)
                if recovery and src is None:
                    await self._recover(s, recovery)
            if src is not None:  # the standby leader: read-only, its roles come from the other cluster
                result = await self.start(s, False, standby.REMOTE)
            else:
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

    async def _recover(self, s: Snapshot, recovery: Mapping[str, Any]) -> None:
        """Recover a restored data directory with ``recovery`` (a bootstrap method's
        recovery_conf) until it promotes, then stop: the caller starts it as the primary."""
        params = {**parameters.wanted(s.config, ""), "recovery_target_action": "promote", **recovery}
        self.postgres.make_primary()
        self.postgres.write_config(params, self.hba(s), None, None, False)
        self.postgres.runas.write_file(self.postgres.data_dir / "recovery.signal", "")
        log.info("recovering the restored data directory: %s",
                 ", ".join(f"{k}={v}" for k, v in sorted(recovery.items()) if k.startswith("recovery_target")) or
                 "to the end of its WAL")
        # Replaying an archive takes as long as it takes: hours are normal, a dead postmaster is not.
        limit = 24 * 3600.0
        await self.postgres.start(max(s.config.primary_start_timeout, 3600))
        end = time.monotonic() + limit
        while (await self.postgres.query("SELECT pg_is_in_recovery()"))[0][0]:
            if time.monotonic() > end:
                raise e.PostgresError(f"recovery of the first data directory did not finish within {limit:.0f} s")
            await asyncio.sleep(0.5)
        last = (await self.postgres.query("SELECT pg_last_xact_replay_timestamp()::text"))[0][0]
        await self.postgres.stop("fast")
        log.info("recovery finished (last transaction replayed: %s): the restored data directory is a primary",
                 last or "none")

    async def clone(self, act: a.CloneFrom, s: Snapshot) -> Result:
        host, port = member_addr(s, act.leader)
        t0 = time.monotonic()
        await methods.create_replica(self.local, self.postgres, act.leader, host, port, s.config.archive)
        result = await self.start(s, False, act.leader)
        log.info("cloned from %s in %.1f s: streaming as a replica", act.leader, time.monotonic() - t0)
        return result

    async def rewind(self, act: a.Rewind, s: Snapshot) -> Result:
        host, port = member_addr(s, act.leader)
        await self.postgres.stop("fast")
        await self._ledger(act, s, host, port)
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
                await methods.create_replica(self.local, self.postgres, act.leader, host, port, s.config.archive)
        else:
            log.info("use_pg_rewind is off: re-cloning from %s", act.leader)
            await methods.create_replica(self.local, self.postgres, act.leader, host, port, s.config.archive)
        try:
            result = await self.start(s, False, act.leader)
        except e.WalGone as exc:
            # pg_rewind copies only the WAL its source still has; a new primary's first
            # checkpoint can recycle what the rewound directory must replay. Only a copy helps.
            log.warning("the rewound data directory cannot open (%s): re-cloning from %s", exc, act.leader)
            await methods.create_replica(self.local, self.postgres, act.leader, host, port, s.config.archive)
            result = await self.start(s, False, act.leader)
        log.info("rejoined as a replica of %s", act.leader)
        return result

    async def _ledger(self, act: a.Rewind, s: Snapshot, host: str, port: int) -> None:
        """Record what the rewind (or re-clone) is about to discard (``agent.divergence``); a
        failure to record never holds the rejoin up."""
        own = s.pg.primary_on_timeline
        if own is None or not act.leader_timeline or act.leader_timeline <= own:
            return
        try:
            event = await divergence.record(self.postgres, host, port, act.leader, act.leader_timeline, own)
            if event is not None:
                await self.store.append_event(event, s.config.retry_timeout)
        except (e.PghaError, OSError, psycopg.Error) as exc:
            log.warning("divergence ledger: could not record what the rewind discards: %s", exc)

    async def resume(self, s: Snapshot) -> Result:
        # Writes are down until this returns, and the read-only server holds only WAL it wrote itself:
        # an immediate stop loses nothing, where a clean one waits on every session and walsender
        # (one to a replica behind a dead link, until wal_sender_timeout: a minute).
        await self.postgres.stop("immediate")
        result = await self.start(s, True, None)
        log.info("resumed as primary on timeline %d", s.pg.timeline)
        return result

    async def copy_logical_slots(self, act: a.CopyLogicalSlots, s: Snapshot,
                                 states: Mapping[str, tuple[bytes, int]]) -> Result:
        """Install the slots' state files read from the leader (``Executor``) into the stopped
        data directory and start again as a replica."""
        await self.postgres.stop("fast")
        slots.install_states(self.postgres.runas, self.postgres.data_dir, states)
        result = await self.start(s, False, s.pg.following or act.leader)
        log.info("copied logical slot(s) %s from %s: they advance with the primary's positions from now on",
                 ", ".join(sorted(states)), act.leader)
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
        await methods.create_replica(self.local, self.postgres, act.leader, host, port, s.config.archive)
        result = await self.start(s, False, act.leader)
        log.info("reinitialized from %s", act.leader)
        return result


def _unreachable(exc: Exception) -> bool:
    """pg_rewind failed because the source did not answer, not because of the data."""
    text = str(exc).lower()
    return "could not connect" in text or "connection to server" in text or "timeout expired" in text
