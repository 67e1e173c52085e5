"""A simulated cluster that drives the real ``decide`` with an in-memory etcd and Postgres.

Actions take effect instantly; time, crashes, partitions, paused agents, runtime config changes,
replay pauses, cut replication links and a wiped key space are events chosen by the test. Only
the decision core is real here; that is the point. The lease keeper is modelled after
``pgha/agent/lease.py`` (renewal at the granted ttl, a new lease after a ttl change, the earlier
lease kept alive until nothing is bound to it).

Postgres is modelled with what the rules look at: timelines that fork at a position (timeline
ids are unique here, as with a shared WAL archive), received versus replayed positions, a
replica that cannot stream once it holds WAL past its upstream's fork, and synchronous commits
that are acknowledged only when the standbys ``synchronous_standby_names`` asks for received them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pgha.config.model import DynamicConfig, Tags
from pgha.core import actions as a
from pgha.core import fitness, lease, publish, sync
from pgha.core.cluster import ClusterView, FailoverRequest, HistoryEntry, LeaderStatus, Member, SyncState
from pgha.core.decide import decide
from pgha.core.health import NodeHealth, is_primary
from pgha.core.snapshot import PgState, Snapshot

SYSID = "7000000000000000001"


@dataclass
class SimLease:
    expires: float  # true time
    ttl: int


@dataclass
class SimEtcd:
    config: DynamicConfig | None
    leases: dict[int, SimLease] = field(default_factory=dict)
    initialize: str | None = SYSID
    initialize_revision: int = 1
    leader: str | None = None
    leader_lease: int = 0
    leader_revision: int = 0
    members: dict[str, tuple[Member, int]] = field(default_factory=dict)
    status: LeaderStatus = field(default_factory=LeaderStatus)
    # The leader's exact position at its last status publication, whether or not the publishing
    # slack (``core.publish``) let it reach ``status``: the lag invariant is judged against it.
    leader_lsn: int = 0
    failover: FailoverRequest | None = None
    sync: SyncState | None = None
    history: tuple[HistoryEntry, ...] = ()
    revision: int = 1
    next_lease: int = 1

    def bump(self) -> int:
        self.revision += 1
        return self.revision

    def grant(self, now: float, ttl: int) -> int:
        lid, self.next_lease = self.next_lease, self.next_lease + 1
        self.leases[lid] = SimLease(now + ttl, ttl)
        return lid

    def expire(self, now: float) -> None:
        dead = {lid for lid, held in self.leases.items() if held.expires <= now}
        for lid in dead:
            self.revoke(lid)

    def revoke(self, lid: int) -> None:
        self.leases.pop(lid, None)
        if self.leader_lease == lid and self.leader is not None:
            self.leader, self.leader_lease, self.leader_revision = None, 0, self.bump()
        self.members = {n: (m, held) for n, (m, held) in self.members.items() if held != lid}

    def wipe(self) -> None:
        """``etcdctl del --prefix /pgha/<scope>/``: every key goes, the leases stay."""
        self.initialize, self.config, self.leader, self.leader_lease = None, None, None, 0
        self.members, self.status, self.failover, self.sync, self.history = {}, LeaderStatus(), None, None, ()
        self.leader_lsn = 0
        self.leader_revision = self.bump()

    def view(self) -> ClusterView:
        return ClusterView(initialize=self.initialize, initialize_revision=self.initialize_revision,
                           config=self.config, leader=self.leader, leader_lease=self.leader_lease,
                           leader_revision=self.leader_revision, members={n: m for n, (m, _) in self.members.items()},
                           member_leases={n: held for n, (_, held) in self.members.items()}, status=self.status,
                           history=self.history, failover=self.failover, sync=self.sync, revision=self.revision)


@dataclass
class SimPg:
    running: bool = True
    in_recovery: bool = True
    timeline: int = 1
    received: int = 0  # primary: its write position
    replayed: int = 0
    following: str | None = None
    primary_on_timeline: int | None = None
    handover_lsn: int | None = None
    down_since: float | None = None
    last_streaming_at: float | None = None
    stalled_since: float | None = None
    replay_paused: bool = False
    sync_setting: str = ""

    @property
    def lsn(self) -> int:
        return max(self.received, self.replayed)

    def append(self, amount: int) -> None:
        self.received = self.replayed = self.lsn + amount


@dataclass
class SimNode:
    name: str
    tags: Tags
    pg: SimPg
    config: DynamicConfig  # the last config this agent read from etcd
    offset: float = 0.0  # this node's monotonic clock minus true time; only ever grows
    lease: int = 0
    granted_ttl: int = 0
    granted_retry: float = 0.0
    retiring: int = 0  # an earlier lease kept alive while something of ours is bound to it
    retiring_until: float | None = None
    retiring_retry: float = 0.0  # the demotion margin the retiring lease was granted under
    valid_until: float | None = None  # on this node's clock
    note: str = ""  # the last decision's note (a liveness violation prints it)
    renewed_at: float | None = None
    view: ClusterView = field(default_factory=ClusterView)
    leader_lost_at: float | None = None
    initialize_empty_since: float | None = None
    peer_positions: dict[str, int] = field(default_factory=dict)
    peers_asked_at: float | None = None
    peers_asked: frozenset[str] = frozenset()
    peers_refused: frozenset[str] = frozenset()
    alive: bool = True  # agent process running (False: killed or SIGSTOPped)
    killed: bool = False  # not alive because killed: its API port refuses connections (SIGSTOP: no answer)
    partitioned: bool = False  # cut from etcd and from the other agents' REST APIs
    wal_cut: bool = False  # its walreceiver silently gets nothing more from its upstream


class Violation(AssertionError):
    pass


class SimCluster:
    def __init__(self, n: int, config: DynamicConfig, nofailover: frozenset[str] = frozenset()) -> None:
        self.config = config
        self.now = 0.0
        self.etcd = SimEtcd(config)
        self.parents: dict[int, tuple[int, int]] = {}  # timeline -> (parent timeline, fork position)
        self.timelines = 1
        self.promotions = 0
        self.acked: dict[int, int] = {}  # synchronous mode: highest acknowledged commit per timeline
        fallback = "*" if sync.mode(config) != "off" and config.synchronous_mode_strict else ""
        self.nodes: dict[str, SimNode] = {}
        for i in range(1, n + 1):
            name, primary = f"n{i}", i == 1
            pg = SimPg(in_recovery=not primary, following=None if primary else "n1",
                       primary_on_timeline=1 if primary else None, sync_setting=fallback)
            self.nodes[name] = SimNode(name, Tags(nofailover=name in nofailover), pg, config)
        for node in self.nodes.values():
            self._renew(node)
        self.etcd.leader, self.etcd.leader_lease = "n1", self.nodes["n1"].lease
        self.etcd.status = LeaderStatus("n1", 1, 0)
        for node in self.nodes.values():
            self.tick(node.name)

    def local(self, node: SimNode) -> float:
        return self.now + node.offset

    # -- events ----------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        self.now += dt
        self.etcd.expire(self.now)

    def clock_jump(self, name: str, dt: float) -> None:
        self.nodes[name].offset += dt

    def write(self, amount: int) -> None:
        """Clients commit on every node that accepts writes (a split brain would show here). A
        synchronous commit reaches the standbys Postgres waits for as part of the commit and is
        acknowledged once enough of them have it."""
        for node in self.nodes.values():
            if node.pg.running and not node.pg.in_recovery:
                node.pg.append(amount)
                self._acknowledge(node)

    def _acknowledge(self, primary: SimNode) -> None:
        setting, pg = primary.pg.sync_setting, primary.pg
        if sync.mode(self.config) == "off" or not setting:
            return  # asynchronous: nothing is promised
        connected = sorted(n for n in self.nodes if self.flows(n, primary.name))
        names, need = (connected[:1], 1) if setting.strip() == "*" else sync.postgres_quorum(setting)
        got = [n for n in names if n in connected]
        if len(got) < need:
            return  # the commit waits (strict mode, or not enough standbys)
        for n in got:
            self._receive(self.nodes[n], primary)
        key = self.etcd.sync
        if self.config.synchronous_mode_strict or key is not None and key.leader == primary.name and key.members:
            # What pgha promises: strict mode never acknowledges without a standby; non-strict
            # mode only while the sync key records one (an empty key means "fell back to async").
            self.acked[pg.timeline] = max(self.acked.get(pg.timeline, 0), pg.lsn)

    def streams_from(self, name: str, upstream: str) -> bool:
        """Connected as both ends see it. A cut replication link is silent: both ends keep
        believing they stream until a timeout far longer than these scenarios."""
        node, up = self.nodes[name], self.nodes.get(upstream)
        pg = node.pg
        if up is None or pg.following != upstream or not (pg.running and pg.in_recovery):
            return False
        return up.pg.running and not self._forked(pg, up.pg)

    def flows(self, name: str, upstream: str) -> bool:
        """WAL actually arrives."""
        return self.streams_from(name, upstream) and not self.nodes[name].wal_cut

    def _forked(self, pg: SimPg, up: SimPg) -> bool:
        """Whether ``pg`` holds WAL its upstream's history does not contain."""
        if up.timeline < pg.timeline:
            return True
        if up.timeline == pg.timeline:
            return False
        fork = self.fork_point(pg.timeline, up.timeline)
        return fork is None or pg.lsn > fork

    def fork_point(self, timeline: int, descendant: int) -> int | None:
        """Where ``descendant``'s history left ``timeline`` (None: not an ancestor)."""
        tl = descendant
        while tl in self.parents:
            parent, at = self.parents[tl]
            if parent == timeline:
                return at
            tl = parent
        return None

    def _receive(self, node: SimNode, up: SimNode) -> None:
        pg = node.pg
        pg.received, pg.timeline = max(pg.received, up.pg.lsn), max(pg.timeline, up.pg.timeline)
        if not pg.replay_paused:
            pg.replayed = pg.received
        pg.last_streaming_at = self.local(node)

    def replicate(self, name: str) -> None:
        node = self.nodes[name]
        if node.pg.following and self.flows(name, node.pg.following):
            self._receive(node, self.nodes[node.pg.following])

    def request_switchover(self, candidate: str) -> None:
        """As ``POST /switchover`` does, never to the leader itself (``core.requests``: 412)."""
        if self.etcd.failover is None and self.etcd.leader is not None and candidate != self.etcd.leader:
            self.etcd.failover = FailoverRequest(self.etcd.leader, candidate)

    def crash_pg(self, name: str) -> None:
        pg = self.nodes[name].pg
        if pg.running:
            pg.running = False
            pg.down_since = self.local(self.nodes[name])

    def set_alive(self, name: str, alive: bool, killed: bool = False) -> None:
        self.nodes[name].alive, self.nodes[name].killed = alive, not alive and killed

    def restart_agent(self, name: str) -> None:
        """A killed agent starts again: a new lease, nothing remembered but the data directory."""
        node = self.nodes[name]
        node.alive, node.lease, node.retiring, node.retiring_until = True, 0, 0, None
        node.valid_until = node.renewed_at = node.leader_lost_at = node.initialize_empty_since = None
        node.peer_positions, node.peers_asked_at = {}, None
        node.peers_asked = node.peers_refused = frozenset()

    def set_partitioned(self, name: str, partitioned: bool) -> None:
        self.nodes[name].partitioned = partitioned

    def set_wal_cut(self, name: str, cut: bool) -> None:
        self.nodes[name].wal_cut = cut

    def pause_replay(self, name: str, paused: bool) -> None:
        pg = self.nodes[name].pg
        pg.replay_paused = paused
        if not paused:
            pg.replayed = pg.received if pg.in_recovery else pg.lsn

    def change_config(self, **changes: object) -> None:
        """``PATCH /config``: only a valid result is stored, as the REST API does."""
        self.config = replace_config(self.config, **changes)
        if self.etcd.config is not None:
            self.etcd.config = self.config
            self.etcd.bump()

    def wipe(self, abandoned_claim: bool = False) -> None:
        """``etcdctl del --prefix``, an operator's act rather than a fault, done here while every
        agent runs and reaches etcd. The watch wakes every agent at once, and the agents run
        until a leader is recorded again. A frozen agent would keep a writable primary whose lease
        lives on; and in synchronous mode, losing the nodes that hold the newest acknowledged
        commits before the next leader is recorded loses them: nothing records who they were."""
        if any(not n.alive or n.partitioned for n in self.nodes.values()) or self.config.pause:
            return  # (paused, nobody takes automatic action: a leader need not be recorded again)
        self.etcd.wipe()
        if abandoned_claim:  # a new node won the bootstrap race and died before initdb finished
            self.etcd.initialize, self.etcd.initialize_revision = "", self.etcd.bump()
        for node in self.nodes.values():
            node.view = self.etcd.view()  # the watch updates every agent's view at once
        limit = 6 * max(n.config.ttl for n in self.nodes.values())  # some may not have read a ttl change yet
        for step in range(limit):
            for name in sorted(self.nodes, reverse=step % 2 == 1):
                self.replicate(name)
                self.tick(name)
                self.check()
            if self.etcd.status.leader:
                return
            self.advance(1.0)
        notes = "; ".join(f"{n}: {node.note}" for n, node in sorted(self.nodes.items()))
        raise Violation(f"no leader {limit} s after the key space was wiped "
                        f"(initialize {self.etcd.initialize!r}; {notes})")

    def abandon_bootstrap_claim(self) -> None:
        """The key space is wiped and a bootstrap winner dies after claiming ``initialize``."""
        self.wipe(abandoned_claim=True)

    # -- the lease keeper ---------------------------------------------------------------

    def _renew(self, node: SimNode) -> bool:
        if node.partitioned:
            return False
        etcd, cfg, sent = self.etcd, node.config, self.local(node)
        held = etcd.leases.get(node.lease)
        if held is not None:
            held.expires, ttl = self.now + held.ttl, held.ttl
            if cfg.ttl != node.granted_ttl:
                node.retiring, node.retiring_until = node.lease, sent + ttl - node.granted_retry + cfg.retry_timeout
                node.retiring_retry = node.granted_retry
                node.lease, ttl = etcd.grant(self.now, cfg.ttl), cfg.ttl
                node.granted_ttl, node.granted_retry = cfg.ttl, cfg.retry_timeout
        else:
            node.lease, ttl = etcd.grant(self.now, cfg.ttl), cfg.ttl
            node.granted_ttl, node.granted_retry = cfg.ttl, cfg.retry_timeout
        self._keep_retiring(node, sent)
        node.valid_until, node.renewed_at = sent + ttl, sent
        if node.retiring_until is not None:
            node.valid_until = min(node.valid_until, node.retiring_until)
        return True

    def _keep_retiring(self, node: SimNode, sent: float) -> None:
        old, etcd = node.retiring, self.etcd
        if not old:
            return
        held = etcd.leases.get(old)
        bound = etcd.leader_lease == old or any(lid == old for _, lid in etcd.members.values())
        if bound and held is not None:
            held.expires = self.now + held.ttl
            # counted with the margin it was granted under (the lease rule subtracts the current one)
            node.retiring_until = sent + held.ttl - node.retiring_retry + node.granted_retry
            return
        etcd.revoke(old)
        node.retiring, node.retiring_until = 0, None

    # -- one HA loop of one node ------------------------------------------------------

    def pg_state(self, node: SimNode) -> PgState:
        pg = node.pg
        streaming = bool(pg.following and self.streams_from(node.name, pg.following)
                         and not self.nodes[pg.following].pg.in_recovery)
        standbys = {n: self.nodes[n].pg.received for n in self.nodes if self.streams_from(n, node.name)}
        names = sync.postgres_quorum(pg.sync_setting)[0]
        confirmed = frozenset(n for n in names if n in standbys)
        return PgState(data_dir_empty=False, sysid=SYSID, running=pg.running, in_recovery=pg.in_recovery,
                       timeline=pg.timeline, lsn=pg.lsn, replayed_lsn=pg.replayed, streaming=streaming,
                       following=pg.following, primary_on_timeline=pg.primary_on_timeline,
                       handover_lsn=pg.handover_lsn, down_since=pg.down_since,
                       last_streaming_at=pg.last_streaming_at, stalled_since=pg.stalled_since,
                       replica_lsns=standbys if pg.running and not pg.in_recovery else {},
                       sync_setting=pg.sync_setting, sync_confirmed=confirmed)

    def snapshot(self, node: SimNode, dcs_ok: bool) -> Snapshot:
        return Snapshot(now=self.local(node), name=node.name, tags=node.tags, config=node.config,
                        cluster=node.view, dcs_ok=dcs_ok, pg=self.pg_state(node),
                        lease_valid_until=node.valid_until, lease_renewed_at=node.renewed_at,
                        leader_lost_at=node.leader_lost_at, lease_id=node.lease or None,
                        peer_positions=dict(node.peer_positions), peers_asked_at=node.peers_asked_at,
                        peers_asked=node.peers_asked, peers_refused=node.peers_refused,
                        initialize_empty_since=node.initialize_empty_since)

    def _observe(self, node: SimNode) -> bool:
        self.etcd.expire(self.now)
        if not self._renew(node):
            return False
        node.view = self.etcd.view()
        if node.view.config is not None:
            node.config = node.view.config  # type: ignore[assignment]
        local = self.local(node)
        if node.view.leader is None:
            node.leader_lost_at = node.leader_lost_at if node.leader_lost_at is not None else local
        else:
            node.leader_lost_at = None
        if node.view.initialize == "":
            node.initialize_empty_since = node.initialize_empty_since if node.initialize_empty_since is not None else local
        else:
            node.initialize_empty_since = None
        return True

    def tick(self, name: str) -> list[a.Action]:
        node = self.nodes[name]
        if not node.alive:
            return []
        dcs_ok = self._observe(node)
        pg = node.pg
        if not (pg.running and pg.in_recovery) or pg.following and self.streams_from(name, pg.following):
            pg.stalled_since = None
        elif pg.stalled_since is None:
            pg.stalled_since = self.local(node)
        decision = decide(self.snapshot(node, dcs_ok))
        node.note = decision.note
        for act in decision.actions:
            self._execute(node, act, dcs_ok)
            self.check()
        if node.pg.running and not node.pg.in_recovery and not node.config.pause and self.etcd.initialize != "":
            # (while a bootstrap claim is empty nobody can take the leader key: still one writer)
            snap = self.snapshot(node, dcs_ok)
            if not (snap.is_leader() if dcs_ok else snap.holds_lease()):
                raise Violation(f"{name} still accepts writes after its loop at t={self.now} "
                                f"without holding the leader key with its lease safely alive")
        if dcs_ok:
            self._publish_member(node)
        return list(decision.actions)

    def _publish_member(self, node: SimNode) -> None:
        pg, st = node.pg, self.pg_state(node)
        role = "primary" if pg.running and not pg.in_recovery else "replica" if pg.running else "stopped"
        state = "streaming" if st.streaming else "running" if pg.running else "stopped"
        m = Member(name=node.name, role=role, state=state, timeline=pg.timeline, lsn=pg.lsn,
                   replayed_lsn=pg.replayed, tags=node.tags.model_dump())
        old = self.etcd.members.get(node.name)
        fresh = old is None or old[1] != node.lease or publish.member_due(self.etcd.view(), m, node.config)
        if node.lease in self.etcd.leases and fresh:
            self.etcd.members[node.name] = (m, node.lease)

    def _execute(self, node: SimNode, act: a.Action, dcs_ok: bool) -> None:
        if isinstance(act, (a.AcquireLeader, a.TakeOverLeaderKey, a.ReleaseLeader, a.ClaimInitialize,
                            a.ReclaimInitialize, a.WriteSyncState, a.ClearFailover, a.PublishLeaderStatus)):
            if dcs_ok:
                self._execute_key(node, act)
                node.view = self.etcd.view()
            return
        self._execute_postgres(node, act, dcs_ok)

    def _ours(self, node: SimNode) -> bool:
        return self.etcd.leader == node.name and self.etcd.leader_lease == node.lease and node.lease in self.etcd.leases

    def _execute_key(self, node: SimNode, act: a.Action) -> None:
        etcd, pg = self.etcd, node.pg
        if isinstance(act, a.AcquireLeader):
            if etcd.leader is None and node.lease in etcd.leases:
                etcd.leader, etcd.leader_lease, etcd.leader_revision = node.name, node.lease, etcd.bump()
        elif isinstance(act, a.TakeOverLeaderKey):
            if (etcd.leader == node.name and etcd.leader_lease == act.old_lease
                    and etcd.leader_revision == act.revision and node.lease in etcd.leases):
                etcd.leader_lease, etcd.leader_revision = node.lease, etcd.bump()
        elif isinstance(act, a.ReleaseLeader):
            if self._ours(node):
                etcd.leader, etcd.leader_lease, etcd.leader_revision = None, 0, etcd.bump()
        elif isinstance(act, a.ClaimInitialize):
            if etcd.initialize is None:
                etcd.initialize, etcd.initialize_revision = act.sysid, etcd.bump()
                etcd.config = etcd.config or self.config
        elif isinstance(act, a.ReclaimInitialize):
            if etcd.initialize == "" and etcd.initialize_revision == act.revision:
                etcd.initialize = None
                etcd.bump()
        elif isinstance(act, a.WriteSyncState):
            if self._ours(node):
                etcd.sync = SyncState(node.name, act.members, act.quorum)
        elif isinstance(act, a.ClearFailover):
            etcd.failover = None
        elif isinstance(act, a.PublishLeaderStatus):
            status = LeaderStatus(node.name, pg.timeline, pg.lsn)
            if self._ours(node):
                etcd.leader_lsn = pg.lsn
            if self._ours(node) and publish.status_due(etcd.status, status, node.config):
                etcd.status = status

    def _execute_postgres(self, node: SimNode, act: a.Action, dcs_ok: bool) -> None:
        pg = node.pg
        if isinstance(act, a.Promote):
            if dcs_ok and self._ours(node):
                self._promote(node)
        elif isinstance(act, a.ResumeAsPrimary):
            pg.in_recovery, pg.following, pg.primary_on_timeline = False, None, pg.timeline
        elif isinstance(act, a.Demote):
            pg.running, pg.in_recovery, pg.following, pg.stalled_since = True, True, act.follow, None
        elif isinstance(act, a.StartPostgres):
            pg.running, pg.in_recovery, pg.following, pg.down_since = True, not act.primary, act.follow, None
            pg.stalled_since = None
            if act.primary:
                pg.primary_on_timeline = pg.timeline
        elif isinstance(act, (a.Rewind, a.CloneFrom, a.Reinitialize)):
            leader = self.nodes[act.leader]
            if not leader.pg.running:
                return  # pg_rewind and pg_basebackup need a running source: the job fails
            # Either way the directory ends as the leader's history up to its current position.
            pg.running, pg.in_recovery, pg.following, pg.handover_lsn = True, True, act.leader, None
            pg.timeline, pg.received, pg.replayed = leader.pg.timeline, leader.pg.lsn, leader.pg.lsn
            pg.primary_on_timeline = pg.down_since = pg.stalled_since = None
        elif isinstance(act, a.FollowLeader):
            pg.following, pg.stalled_since = act.leader, None
        elif isinstance(act, a.StopPostgres):
            pg.running = False
        elif isinstance(act, a.HandOver):
            self._hand_over(node, dcs_ok)
        elif isinstance(act, a.ClearDivergence):
            pg.primary_on_timeline = pg.handover_lsn = None
        elif isinstance(act, a.AskPeers):
            node.peer_positions = {n: self.nodes[n].pg.lsn for n in act.members
                                   if n in self.nodes and self.nodes[n].alive and not self.nodes[n].partitioned}
            node.peers_asked_at = self.local(node)
            node.peers_asked = frozenset(act.members)
            node.peers_refused = frozenset(n for n in act.members if n in self.nodes and self.nodes[n].killed
                                           and not self.nodes[n].partitioned)
        elif isinstance(act, a.SetSyncStandbys):
            pg.sync_setting = act.setting
        elif isinstance(act, (a.RestartPostgres, a.ReloadConfig, a.NameSwitchoverCandidate)):
            pass
        elif isinstance(act, a.InitializeCluster | a.Exit):
            raise Violation(f"{node.name}: {act} while its data directory holds the cluster's data")

    def _promote(self, node: SimNode) -> None:
        pg, etcd, cfg = node.pg, self.etcd, node.config
        last = max(etcd.status.lsn, etcd.leader_lsn)  # what an exact ``status`` would hold
        lag = last - fitness.failover_position(pg.received, pg.replayed, cfg)
        if lag > cfg.maximum_lag_on_failover and etcd.status.leader != node.name:
            raise Violation(f"{node.name} promoted {lag} bytes behind (max {cfg.maximum_lag_on_failover})")
        for tl, lsn in self.acked.items():
            if not self.holds(pg, tl, lsn):
                raise Violation(f"{node.name} promoted without the commit acknowledged at {lsn} on timeline {tl} "
                                f"(it has {pg.lsn} on timeline {pg.timeline})")
        etcd.status = LeaderStatus(node.name, pg.timeline, pg.lsn)
        self.timelines += 1
        self.promotions += 1
        self.parents[self.timelines] = (pg.timeline, pg.lsn)
        etcd.history = (*etcd.history, HistoryEntry(pg.timeline, pg.lsn, "failover", "", node.name))
        pg.replayed = pg.received = pg.lsn
        pg.in_recovery, pg.timeline, pg.following, pg.primary_on_timeline = False, self.timelines, None, self.timelines
        pg.handover_lsn = None

    def holds(self, pg: SimPg, timeline: int, lsn: int) -> bool:
        """Whether this data directory contains the commit at ``lsn`` on ``timeline``."""
        if pg.lsn < lsn:
            return False
        if pg.timeline == timeline:
            return True
        fork = self.fork_point(timeline, pg.timeline)
        return fork is not None and fork >= lsn

    def _hand_over(self, node: SimNode, dcs_ok: bool) -> None:
        """CHECKPOINT, clean stop (the standbys connected receive everything), publish, release."""
        pg, etcd = node.pg, self.etcd
        for other in self.nodes.values():
            if self.flows(other.name, node.name):
                self._receive(other, node)
        pg.running, pg.in_recovery, pg.handover_lsn = False, True, pg.lsn
        pg.down_since = self.local(node)
        if dcs_ok and self._ours(node):
            etcd.status = LeaderStatus(node.name, pg.timeline, pg.lsn)
            etcd.leader, etcd.leader_lease, etcd.leader_revision = None, 0, etcd.bump()

    # -- invariants --------------------------------------------------------------------

    def health(self, node: SimNode) -> NodeHealth:
        owns = node.view.leader == node.name and node.view.leader_lease == node.lease
        now, pg = self.local(node), node.pg
        # paused, a writable leader counts on its lease up to its expiry (core.report.holds_leader)
        paused = (node.config.pause and pg.running and not pg.in_recovery and node.valid_until is not None
                  and now < node.valid_until)
        holds = owns and (lease.holds(node.valid_until, now, node.config, node.renewed_at) or paused)
        return NodeHealth(holds_leader=holds, pg_running=node.pg.running, in_recovery=node.pg.in_recovery,
                          streaming=False, lag=None)

    def check(self) -> None:
        self.etcd.expire(self.now)
        healthy = [n.name for n in self.nodes.values() if n.alive and is_primary(self.health(n))]
        if len(healthy) > 1:
            raise Violation(f"two primaries answer 200 on /primary at t={self.now}: {healthy}")
        for name in healthy:
            node = self.nodes[name]
            if node.lease not in self.etcd.leases or self.etcd.leader != name:
                raise Violation(f"{name} answers 200 on /primary at t={self.now} without a live leader key")

    def writable(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.pg.running and not n.pg.in_recovery]

    def settled(self, gone: frozenset[str] = frozenset()) -> str | None:
        """Why the cluster is not in its steady state (None: one primary holding the key, every
        other node but those ``gone`` streaming from it, and in synchronous mode a promotable
        synchronous standby recorded whenever one streams)."""
        writable = [n for n in self.writable() if n not in gone]
        if self.etcd.failover is not None:
            return f"a switchover to {self.etcd.failover.candidate} is pending"
        if len(writable) != 1 or self.etcd.leader != writable[0]:
            return f"writable: {writable}, leader key: {self.etcd.leader}"
        key = self.etcd.sync
        if sync.mode(self.config) != "off" and len(self.nodes) - len(gone) > 1:
            listed = key.members if key is not None and key.leader == writable[0] else ()
            promotable = [n for n in self.nodes if n not in gone and n != writable[0] and self.nodes[n].tags.can_promote]
            if promotable and not any(self.nodes[n].tags.can_promote for n in listed):
                return f"the sync key lists {list(listed)}: nobody could take over (promotable: {promotable})"
        for name in self.nodes:
            if name not in gone and name != writable[0] and not self.streams_from(name, writable[0]):
                pg = self.nodes[name].pg
                return (f"{name} does not stream from {writable[0]} (running {pg.running}, following {pg.following}, "
                        f"timeline {pg.timeline} at {pg.lsn})")
        return None


def replace_config(config: DynamicConfig, **changes: object) -> DynamicConfig:
    return DynamicConfig.model_validate({**config.model_dump(), **changes})


__all__ = ["SimCluster", "Violation", "replace", "replace_config"]
