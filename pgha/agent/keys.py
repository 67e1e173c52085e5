"""The actions on the cluster's keys in etcd, each a compare-and-set: carried out as their
fields say, for the executor (``agent.execute``)."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from pgha.agent.jobs import Result
from pgha.core import actions as a
from pgha.core.cluster import FailoverRequest, SyncState
from pgha.core.poolers import Handover
from pgha.core.rollout import Rollout
from pgha.core.snapshot import Snapshot
from pgha.dcs.store import ClusterStore
from pgha.errors import DcsError

log = logging.getLogger("pgha")


async def execute(act: a.Action, s: Snapshot, store: ClusterStore, lease: int,
                  bootstrap_dcs: BaseModel) -> Result | None:
    """Carry out a key action (None: ``act`` is not one). ``lease``: ours, for the guards (0
    matches no key: no lease, no write); ``bootstrap_dcs``: what a recorded cluster starts with."""
    match act:
        case a.ClaimInitialize():
            if await store.record_initialize(act.sysid, bootstrap_dcs.model_dump(mode="json"),
                                             s.config.retry_timeout):
                log.warning("recorded system identifier %s: the cluster's keys were gone", act.sysid)
            return Result(wake=True)
        case a.ReclaimInitialize():
            if await store.reclaim_initialize(act.revision, s.config.retry_timeout):
                log.warning("reclaimed a bootstrap claim its winner never completed")
            return Result(wake=True)
        case a.TakeOverLeaderKey():
            if await store.take_over_leader(act.old_lease, act.revision, lease, s.config.retry_timeout):
                log.info("took over the leader key from an earlier lease of this agent: no failover")
            return Result(wake=True)
        case a.ReleaseLeader():
            if await store.release_leader(lease, s.cluster.leader_revision, s.config.retry_timeout):
                log.warning("released leader key: %s", act.reason)
            return Result(wake=True)
        case a.NameSwitchoverCandidate():
            await store.set_failover(FailoverRequest(s.name, act.candidate), s.cluster.failover_revision,
                                     s.config.retry_timeout)
            return Result()
        case a.AnnounceHandover():
            handover = Handover(s.name, act.candidate, s.wall_now)
            if await store.announce_handover(handover, lease, s.config.retry_timeout):
                log.info("switchover to %s: asked pooler(s) %s to pause", act.candidate, ", ".join(sorted(s.cluster.poolers)))
            return Result(wake=True)
        case a.WriteRollout():
            if await store.write_rollout(act.record, lease, s.config.retry_timeout):
                await _rollout_written(act.record, s, store)
            return Result(wake=True)
        case a.ClearFailover():
            await store.clear_failover(s.cluster.failover_revision, s.config.retry_timeout)
            log.info("cleared the switchover request: %s", act.reason)
            return Result()
        case a.WriteSyncState():
            if await store.set_sync(SyncState(s.name, act.members, act.quorum), s.cluster.sync_revision,
                                    lease, s.config.retry_timeout):
                log.info("synchronous standbys recorded: %s", ", ".join(act.members) or "none")
                if act.members and all(s.cluster.members[n].nofailover for n in act.members
                                       if n in s.cluster.members):
                    log.warning("failover is impossible: the only synchronous standby is tagged nofailover")
            return Result(wake=True)
    return None


async def _rollout_written(record: Rollout, s: Snapshot, store: ClusterStore) -> None:
    log.info("rolling restart: %s", record.progress())
    if not record.running:  # one event on the timeline, a phase per member
        try:
            await store.append_event(record.event(s.name, s.wall_now), s.config.retry_timeout)
        except DcsError as exc:
            log.warning("could not record the rolling restart's event: %s", exc)
