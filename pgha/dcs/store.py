"""pgha's cluster keys in etcd, under ``<namespace>/<scope>/``.

Atomicity contract of each write:
- ``claim_initialize``: create-only; exactly one caller ever gets True.
- ``acquire_leader``: create-only, bound to our lease; True for at most one live holder.
- ``take_over_leader``: moves a key that names us from an earlier lease of ours onto our lease,
  only if it is unchanged since the revision we read.
- ``release_leader``: deletes the key only if it names us, is bound to our lease and is unchanged.
- ``publish_status``/``set_sync``/``set_failsafe``: only while the leader key names us and is bound to our lease.
- ``set_config``: compare-and-set on the config key's mod revision (0: create-only).
- member keys are bound to the member's lease and vanish when it expires.
Every call raises DcsError when etcd does not answer within its deadline.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pgha import errors as e

from pgha.config.load import parse_stored_config
from pgha.core import events, publish
from pgha.core.cluster import (
    ClusterView,
    FailoverRequest,
    HistoryEntry,
    LeaderStatus,
    Member,
    SyncState,
    history_json,
    parse_cluster,
)
from pgha.core.events import Event
from pgha.core.poolers import Handover
from pgha.core.backup import Backup
from pgha.core.rollout import Rollout
from pgha.core.settings import ClusterSettings
from pgha.dcs.etcd import Compare, EtcdClient, delete_op, put_op

log = logging.getLogger("pgha")


class ClusterStore:
    def __init__(self, client: EtcdClient, prefix: str, name: str) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def _unchanged(self, rel: str, mod_revision: int) -> Compare:
        """Guard for compare-and-set: the key is as last read (absent, when ``mod_revision`` is 0)."""
        if mod_revision == 0:
            return Compare(self.key(rel), "CREATE", 0)
        return Compare(self.key(rel), "MOD", mod_revision)

    async def load(self, deadline: float) -> ClusterView:
        kvs, revision = await self.client.get_prefix(self.prefix, deadline)
        return parse_cluster(kvs, self.prefix, revision, parse_config=parse_stored_config)

    async def claim_initialize(self, deadline: float) -> bool:
        return await self.client.txn([Compare(self.key("initialize"), "CREATE", 0)],
                                     [put_op(self.key("initialize"), "")], deadline=deadline)

    async def finish_initialize(self, sysid: str, config: dict[str, Any], deadline: float) -> None:
        await self.client.txn([Compare(self.key("initialize"), "VALUE", "")],
                              [put_op(self.key("initialize"), sysid)], deadline=deadline)
        await self.set_config(config, 0, deadline)

    async def record_initialize(self, sysid: str, config: dict[str, Any], deadline: float) -> bool:
        """Create ``initialize`` = ``sysid`` (create-only) and ``config`` if it is missing."""
        created = await self.client.txn([Compare(self.key("initialize"), "CREATE", 0)],
                                        [put_op(self.key("initialize"), sysid)], deadline=deadline)
        await self.set_config(config, 0, deadline)
        return created

    async def reclaim_initialize(self, revision: int, deadline: float) -> bool:
        guards = [Compare(self.key("initialize"), "VALUE", ""), Compare(self.key("initialize"), "MOD", revision)]
        return await self.client.txn(guards, [delete_op(self.key("initialize"))], deadline=deadline)

    async def cancel_initialize(self, deadline: float) -> None:
        await self.client.txn([Compare(self.key("initialize"), "VALUE", "")],
                              [delete_op(self.key("initialize"))], deadline=deadline)

    async def acquire_leader(self, lease: int, deadline: float) -> bool:
        return await self.client.txn([Compare(self.key("leader"), "CREATE", 0)],
                                     [put_op(self.key("leader"), self.name, lease)], deadline=deadline)

    def _ours(self, lease: int) -> list[Compare]:
        """Guards: the leader key names us and is bound to our lease."""
        return [Compare(self.key("leader"), "VALUE", self.name), Compare(self.key("leader"), "LEASE", lease)]

    async def take_over_leader(self, old_lease: int, revision: int, lease: int, deadline: float) -> bool:
        guards = [Compare(self.key("leader"), "VALUE", self.name), Compare(self.key("leader"), "LEASE", old_lease),
                  Compare(self.key("leader"), "MOD", revision)]
        return await self.client.txn(guards, [put_op(self.key("leader"), self.name, lease)], deadline=deadline)

    async def release_leader(self, lease: int, revision: int, deadline: float) -> bool:
        guards = [*self._ours(lease), Compare(self.key("leader"), "MOD", revision)]
        return await self.client.txn(guards, [delete_op(self.key("leader"))], deadline=deadline)

    async def publish_member(self, member: Member, lease: int, deadline: float) -> None:
        await self.client.put(self.key(f"members/{self.name}"), member.to_json(), deadline, lease=lease)

    async def publish_member_if_changed(self, member: Member, view: ClusterView, lease: int | None,
                                        config: ClusterSettings, deadline: float) -> None:
        """Write our record only when ``view`` holds one worth replacing (``core.publish``): an
        idle node writes nothing. A failure is logged, never raised (the next loop tries again)."""
        if lease is None or (not publish.member_due(view, member, config)
                             and view.member_leases.get(self.name) == lease):
            return
        try:
            await self.publish_member(member, lease, deadline)
        except e.DcsError as exc:
            log.warning("could not publish member record: %s", exc)

    async def publish_status(self, status: LeaderStatus, lease: int, deadline: float) -> bool:
        """Only while we still hold the leader key, so a deposed leader cannot overwrite its
        successor; False when we no longer hold it."""
        return await self.client.txn(self._ours(lease), [put_op(self.key("status"), status.to_json())],
                                     deadline=deadline)

    async def set_failsafe(self, members: dict[str, str] | None, lease: int, deadline: float) -> bool:
        """Write (None: delete) the ``failsafe`` key, only while we hold the leader key."""
        op = put_op(self.key("failsafe"), json.dumps(members, sort_keys=True)) if members is not None \
            else delete_op(self.key("failsafe"))
        return await self.client.txn(self._ours(lease), [op], deadline=deadline)

    async def set_availability(self, ledger: str, lease: int, deadline: float) -> bool:
        """Store the availability ledger, only while we hold the leader key."""
        return await self.client.txn(self._ours(lease), [put_op(self.key("availability"), ledger)], deadline=deadline)

    async def append_event(self, event: Event, deadline: float) -> None:
        """Add ``event`` to the bounded ``events`` list (compare-and-set: several members may
        record at once)."""
        for _ in range(5):
            kv = await self.client.get(self.key("events"), deadline)
            old = events.parse(kv.value) if kv is not None else ()
            guard = self._unchanged("events", kv.mod_revision if kv is not None else 0)
            if await self.client.txn([guard], [put_op(self.key("events"), events.to_json(events.append(old, event)))],
                                     deadline=deadline):
                return
        raise e.DcsError("the events key kept changing: event not recorded")

    async def append_history(self, view: ClusterView, entry: HistoryEntry, deadline: float) -> None:
        await self.client.put(self.key("history"), history_json([*view.history, entry]), deadline)

    async def set_failover(self, request: FailoverRequest, mod_revision: int, deadline: float) -> bool:
        """Write the switchover request; create-only when ``mod_revision`` is 0, else CAS."""
        return await self.client.txn([self._unchanged("failover", mod_revision)],
                                     [put_op(self.key("failover"), request.to_json())], deadline=deadline)

    async def clear_failover(self, mod_revision: int, deadline: float) -> bool:
        """Delete the request (compare-and-set unless ``mod_revision`` is 0) and any ``handover``
        with it: no pooler stays paused for a hand-over that is over."""
        ops = [delete_op(self.key("failover")), delete_op(self.key("handover"))]
        if mod_revision == 0:
            return await self.client.txn([], ops, deadline=deadline)
        return await self.client.txn([Compare(self.key("failover"), "MOD", mod_revision)], ops, deadline=deadline)

    async def write_rollout(self, record: Rollout, lease: int | None, deadline: float) -> bool:
        """Compare-and-set the ``rollout`` key against ``record.revision`` (0: create-only); with
        ``lease``, only while the leader key is ours (the coordinator's steps)."""
        guards = [self._unchanged("rollout", record.revision), *(self._ours(lease) if lease is not None else [])]
        return await self.client.txn(guards, [put_op(self.key("rollout"), record.to_json())], deadline=deadline)

    async def write_backup(self, record: Backup, deadline: float) -> bool:
        """Compare-and-set the ``backup`` key against ``record.revision`` (0: create-only)."""
        guards = [self._unchanged("backup", record.revision)]
        return await self.client.txn(guards, [put_op(self.key("backup"), record.to_json())], deadline=deadline)

    async def announce_handover(self, handover: Handover, lease: int, deadline: float) -> bool:
        """Write ``handover`` bound to our lease, only while we hold the leader key."""
        return await self.client.txn(self._ours(lease), [put_op(self.key("handover"), handover.to_json(), lease)],
                                     deadline=deadline)

    async def set_sync(self, state: SyncState, mod_revision: int, lease: int, deadline: float) -> bool:
        """Compare-and-set the ``sync`` key (create-only when ``mod_revision`` is 0), as leader."""
        guards = [self._unchanged("sync", mod_revision), *self._ours(lease)]
        return await self.client.txn(guards,
                                     [put_op(self.key("sync"), state.to_json())], deadline=deadline)

    async def set_config(self, config: dict[str, Any], mod_revision: int, deadline: float) -> bool:
        return await self.client.txn([self._unchanged("config", mod_revision)],
                                     [put_op(self.key("config"), json.dumps(config))], deadline=deadline)

    async def remove_cluster(self, deadline: float) -> int:
        return await self.client.delete(self.prefix, deadline, prefix=True)
