"""A simulated cluster that drives the real ``decide`` with an in-memory etcd and Postgres.

Actions take effect instantly; time, crashes, partitions and paused agents are events chosen by
the test. Only the decision core is real here; that is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pgha.config.model import DynamicConfig, Tags
from pgha.core import actions as a
from pgha.core.cluster import ClusterView, FailoverRequest, LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.health import NodeHealth, is_primary
from pgha.core.snapshot import PgState, Snapshot


@dataclass
class SimEtcd:
    leases: dict[int, float] = field(default_factory=dict)  # id -> expiry (true time)
    leader: str | None = None
    leader_lease: int = 0
    members: dict[str, tuple[Member, int]] = field(default_factory=dict)
    status: LeaderStatus = field(default_factory=LeaderStatus)
    failover: FailoverRequest | None = None
    next_lease: int = 1

    def expire(self, now: float) -> None:
        dead = {lid for lid, exp in self.leases.items() if exp <= now}
        for lid in dead:
            del self.leases[lid]
        if self.leader_lease in dead:
            self.leader, self.leader_lease = None, 0
        self.members = {n: (m, lid) for n, (m, lid) in self.members.items() if lid not in dead}

    def view(self, config: DynamicConfig) -> ClusterView:
        return ClusterView(initialize="1", config=config, leader=self.leader, leader_lease=self.leader_lease,
                           members={n: m for n, (m, _) in self.members.items()}, status=self.status,
                           failover=self.failover)


@dataclass
class SimPg:
    running: bool = True
    in_recovery: bool = True
    timeline: int = 1
    lsn: int = 0
    following: str | None = None
    primary_on_timeline: int | None = None
    down_since: float | None = None
    last_streaming_at: float | None = None


@dataclass
class SimNode:
    name: str
    tags: Tags
    pg: SimPg
    offset: float = 0.0  # this node's monotonic clock minus true time; only ever grows
    lease: int = 0
    valid_until: float | None = None  # on this node's clock
    view: ClusterView = field(default_factory=ClusterView)
    leader_lost_at: float | None = None
    alive: bool = True  # agent process running (False: killed or SIGSTOPped)
    partitioned: bool = False


class Violation(AssertionError):
    pass


class SimCluster:
    def __init__(self, n: int, config: DynamicConfig, nofailover: frozenset[str] = frozenset()) -> None:
        self.config = config
        self.now = 0.0
        self.etcd = SimEtcd()
        self.timelines = 1
        self.promotions = 0
        self.nodes: dict[str, SimNode] = {}
        for i in range(1, n + 1):
            name = f"n{i}"
            primary = i == 1
            pg = SimPg(in_recovery=not primary, following=None if primary else "n1",
                       primary_on_timeline=1 if primary else None)
            self.nodes[name] = SimNode(name, Tags(nofailover=name in nofailover), pg)
        for node in self.nodes.values():
            self._renew(node)
        self.etcd.leader, self.etcd.leader_lease = "n1", self.nodes["n1"].lease
        self.etcd.status = LeaderStatus("n1", 1, 0)
        for node in self.nodes.values():
            self.tick(node.name)

    # -- events ----------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        self.now += dt
        self.etcd.expire(self.now)

    def clock_jump(self, name: str, dt: float) -> None:
        self.nodes[name].offset += dt

    def write(self, amount: int) -> None:
        """Clients write to every node that accepts writes (a split brain would show here)."""
        for node in self.nodes.values():
            if node.pg.running and not node.pg.in_recovery:
                node.pg.lsn += amount

    def replicate(self, name: str) -> None:
        node = self.nodes[name]
        up = self.nodes.get(node.pg.following or "")
        if node.pg.running and node.pg.in_recovery and up and up.pg.running and up.pg.timeline >= node.pg.timeline:
            node.pg.lsn = max(node.pg.lsn, up.pg.lsn)
            node.pg.timeline = up.pg.timeline
            node.pg.last_streaming_at = self.now + node.offset

    def request_switchover(self, candidate: str) -> None:
        if self.etcd.failover is None and self.etcd.leader is not None:
            self.etcd.failover = FailoverRequest(self.etcd.leader, candidate)

    def crash_pg(self, name: str) -> None:
        pg = self.nodes[name].pg
        if pg.running:
            pg.running = False
            pg.down_since = self.now + self.nodes[name].offset

    def set_alive(self, name: str, alive: bool) -> None:
        self.nodes[name].alive = alive

    def set_partitioned(self, name: str, partitioned: bool) -> None:
        self.nodes[name].partitioned = partitioned

    # -- one HA loop of one node ------------------------------------------------------

    def _renew(self, node: SimNode) -> bool:
        if node.partitioned:
            return False
        local = self.now + node.offset
        if node.lease in self.etcd.leases:
            self.etcd.leases[node.lease] = self.now + self.config.ttl
        else:
            node.lease = self.etcd.next_lease
            self.etcd.next_lease += 1
            self.etcd.leases[node.lease] = self.now + self.config.ttl
        node.valid_until = local + self.config.ttl
        node.view = self.etcd.view(self.config)
        return True

    def pg_state(self, node: SimNode) -> PgState:
        pg = node.pg
        up = self.nodes.get(pg.following or "")
        streaming = bool(pg.running and pg.in_recovery and up and up.pg.running and not up.pg.in_recovery)
        return PgState(data_dir_empty=False, sysid="1", running=pg.running, in_recovery=pg.in_recovery,
                       timeline=pg.timeline, lsn=pg.lsn, replayed_lsn=pg.lsn, streaming=streaming,
                       following=pg.following, primary_on_timeline=pg.primary_on_timeline,
                       down_since=pg.down_since, last_streaming_at=pg.last_streaming_at)

    def snapshot(self, node: SimNode, dcs_ok: bool) -> Snapshot:
        return Snapshot(now=self.now + node.offset, name=node.name, tags=node.tags, config=self.config,
                        cluster=node.view, dcs_ok=dcs_ok, pg=self.pg_state(node),
                        lease_valid_until=node.valid_until, leader_lost_at=node.leader_lost_at,
                        lease_id=node.lease or None)

    def tick(self, name: str) -> list[a.Action]:
        node = self.nodes[name]
        if not node.alive:
            return []
        self.etcd.expire(self.now)
        dcs_ok = self._renew(node)
        if dcs_ok:
            if node.view.leader is None:
                node.leader_lost_at = node.leader_lost_at if node.leader_lost_at is not None else self.now + node.offset
            else:
                node.leader_lost_at = None
        decision = decide(self.snapshot(node, dcs_ok))
        for act in decision.actions:
            self._execute(node, act, dcs_ok)
            self.check()
        if node.pg.running and not node.pg.in_recovery and not self.config.pause:
            snap = self.snapshot(node, dcs_ok)
            if not (snap.is_leader() if dcs_ok else snap.holds_lease()):
                raise Violation(f"{name} still accepts writes after its loop at t={self.now} "
                                f"without holding the leader key with its lease safely alive")
        if dcs_ok:
            pg = node.pg
            role = "primary" if pg.running and not pg.in_recovery else "replica" if pg.running else "stopped"
            m = Member(name=name, role=role, state="streaming" if self.pg_state(node).streaming else "running" if pg.running else "stopped",
                       timeline=pg.timeline, lsn=pg.lsn, replayed_lsn=pg.lsn, tags=node.tags.model_dump())
            self.etcd.members[name] = (m, node.lease)
        return list(decision.actions)

    def _execute(self, node: SimNode, act: a.Action, dcs_ok: bool) -> None:
        pg, etcd = node.pg, self.etcd
        if isinstance(act, a.AcquireLeader):
            if dcs_ok and etcd.leader is None and node.lease in etcd.leases:
                etcd.leader, etcd.leader_lease = node.name, node.lease
                node.view = etcd.view(self.config)
        elif isinstance(act, a.TakeOverLeaderKey):
            if dcs_ok and etcd.leader == node.name and etcd.leader_lease == act.old_lease \
                    and act.old_lease in etcd.leases:
                etcd.leader_lease = node.lease
                node.view = etcd.view(self.config)
        elif isinstance(act, a.Promote):
            lag = etcd.status.lsn - pg.lsn
            if lag > self.config.maximum_lag_on_failover:
                raise Violation(f"{node.name} promoted {lag} bytes behind (max {self.config.maximum_lag_on_failover})")
            self.timelines += 1
            self.promotions += 1
            pg.in_recovery, pg.timeline, pg.following, pg.primary_on_timeline = False, self.timelines, None, self.timelines
            if etcd.leader == node.name:
                etcd.status = LeaderStatus(node.name, pg.timeline, pg.lsn)
        elif isinstance(act, a.ResumeAsPrimary):
            pg.in_recovery, pg.following, pg.primary_on_timeline = False, None, pg.timeline
        elif isinstance(act, a.Demote):
            pg.running, pg.in_recovery, pg.following = True, True, None
        elif isinstance(act, a.StartPostgres):
            pg.running, pg.in_recovery, pg.following, pg.down_since = True, not act.primary, act.follow, None
            if act.primary:
                pg.primary_on_timeline = pg.timeline
        elif isinstance(act, (a.Rewind, a.CloneFrom)):
            leader = self.nodes[act.leader]
            pg.running, pg.in_recovery, pg.following = True, True, act.leader
            pg.timeline, pg.lsn, pg.primary_on_timeline, pg.down_since = leader.pg.timeline, min(pg.lsn, leader.pg.lsn), None, None
        elif isinstance(act, a.FollowLeader):
            pg.following = act.leader
        elif isinstance(act, a.ReleaseLeader):
            if dcs_ok and etcd.leader == node.name:
                etcd.leader, etcd.leader_lease = None, 0
        elif isinstance(act, a.StopPostgres):
            pg.running = False
        elif isinstance(act, a.PublishLeaderStatus):
            if dcs_ok and etcd.leader == node.name:
                etcd.status = LeaderStatus(node.name, pg.timeline, pg.lsn)
        elif isinstance(act, a.HandOver):
            pg.running, pg.in_recovery = False, True
            if dcs_ok and etcd.leader == node.name:
                etcd.status = LeaderStatus(node.name, pg.timeline, pg.lsn)
                etcd.leader, etcd.leader_lease = None, 0
        elif isinstance(act, a.ClearDivergence):
            pg.primary_on_timeline = None
        elif isinstance(act, a.ClearFailover):
            if dcs_ok:
                etcd.failover = None
        elif isinstance(act, a.RestartPostgres):
            pass
        elif isinstance(act, a.InitializeCluster | a.Exit | a.Reinitialize):
            raise Violation(f"unexpected {act} in an initialized cluster")

    # -- invariants --------------------------------------------------------------------

    def health(self, node: SimNode) -> NodeHealth:
        local = self.now + node.offset
        holds = (node.view.leader == node.name and node.valid_until is not None
                 and local < node.valid_until - self.config.retry_timeout)
        return NodeHealth(holds_leader=holds, pg_running=node.pg.running, in_recovery=node.pg.in_recovery,
                          streaming=False, lag=None)

    def check(self) -> None:
        self.etcd.expire(self.now)
        healthy = [n.name for n in self.nodes.values() if is_primary(self.health(n))]
        if len(healthy) > 1:
            raise Violation(f"two primaries answer 200 on /primary at t={self.now}: {healthy}")
        for name in healthy:
            node = self.nodes[name]
            if node.lease not in self.etcd.leases or self.etcd.leader != name:
                raise Violation(f"{name} answers 200 on /primary at t={self.now} without a live leader key")

    def writable(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.pg.running and not n.pg.in_recovery]


def replace_config(config: DynamicConfig, **changes: object) -> DynamicConfig:
    return DynamicConfig.model_validate({**config.model_dump(), **changes})


__all__ = ["SimCluster", "Violation", "replace", "replace_config"]
