"""Who races for the leader key when nobody holds it, and who may: the eligibility rules (lag,
timeline, tags, synchronous mode, failsafe mode), the order among eligible replicas, and the
proof a synchronous standby needs before it takes over."""

from __future__ import annotations

from collections.abc import Collection

from pgha.core import failsafe, fitness, publish, sync
from pgha.core.actions import AcquireLeader, AskPeers, Decision, Demote, FollowLeader
from pgha.core.snapshot import Snapshot


def _wait(note: str) -> Decision:
    return Decision((), note)


def ineligibility(s: Snapshot) -> str | None:
    """Why this node may not take the leader key now, or None if it may."""
    pg, c = s.pg, s.cluster
    if not s.tags.can_promote:
        return "tagged nofailover"
    if s.fence_problem:
        return s.fence_problem
    # ``status`` may lag the last primary position by up to the publishing slack: count it.
    lag = c.status.lsn + publish.slack(s.config) - fitness.failover_position(pg.lsn, pg.replayed_lsn, s.config)
    if lag > s.config.maximum_lag_on_failover:
        return f"{lag} bytes behind the last primary position (maximum_lag_on_failover {s.config.maximum_lag_on_failover})"
    # The primary's death stops streaming a full ttl before its key expires, so "recently" must
    # reach back further than ttl; it still excludes replicas that were cut off long before.
    recently_streaming = pg.streaming or (
        pg.last_streaming_at is not None and s.now - pg.last_streaming_at <= 2 * s.config.ttl)
    if not recently_streaming and pg.lsn < c.status.lsn and _position_may_return(s):
        return "not streaming and not holding the last primary position"
    if s.config.check_timeline and pg.timeline < c.status.timeline:
        return f"timeline {pg.timeline} is older than the last primary's {c.status.timeline}"
    return failsafe.race_problem(s) or sync.promotion_problem(s)


def answers_fresh(s: Snapshot, names: Collection[str]) -> bool:
    """Whether every one of ``names`` was asked (``AskPeers``) after the leader was lost and
    within ``retry_timeout``: member records can be a loop old, answers are live."""
    at = s.peers_asked_at
    return (at is not None and s.now - at <= s.config.retry_timeout
            and (s.leader_lost_at is None or at >= s.leader_lost_at) and set(names) <= s.peers_asked)


def agents_gone(s: Snapshot, names: Collection[str]) -> frozenset[str]:
    """Those of ``names`` whose hosts refused a fresh ask: no agent runs there to take the key
    (a killed node; its member record lives on until its lease expires), so waiting for them
    would only wait out ``retry_timeout``. A host that does not answer at all is not gone."""
    return frozenset(n for n in names if n in s.peers_refused) if answers_fresh(s, names) else frozenset()


def _position_may_return(s: Snapshot) -> bool:
    """Whether a member may still bring the last primary position back: one holds it (records are
    exact while there is no leader: ``core.publish``), or the primary that published it is away
    and may come back with it. Not when that primary is back without it (rewound onto a leader
    that never promoted): the WAL is gone, and only the lag bound can judge, as in Patroni, or
    the cluster waits for an operator forever."""
    c = s.cluster
    if any(m.lsn >= c.status.lsn for m in c.members.values() if m.name != s.name):
        return True
    return c.status.leader != s.name and c.status.leader not in c.members


def without_leader(s: Snapshot) -> Decision:
    if s.pg.writable:
        if failsafe.holds(s) and s.holds_lease():
            return Decision((AcquireLeader("the leader key expired while etcd was unreachable; every member "
                                           "confirmed this primary meanwhile (failsafe mode)"),),
                            "etcd is back: taking the leader key again as the confirmed primary")
        return Decision((Demote("immediate", reason="no leader key: our lease was lost"),),
                        "running as primary without the leader key: demoting")
    seen = failsafe.leader_elsewhere(s)
    if seen is not None:
        return _wait(f"no leader key, but {seen} asked us to confirm it as primary less than ttl ago "
                     f"(failsafe mode): not racing")
    why = ineligibility(s)
    if why is not None:
        return _wait(f"no leader, not eligible for promotion: {why}")
    mine = fitness.rank(s.pg.lsn, s.tags.failover_priority, s.name)
    better = sorted(m.name for m in s.cluster.members.values()
                    if m.name != s.name and fitness.peer_eligible(m, s.cluster, s.config)
                    and sync.listing_problem(s.cluster, s.config, m.name) is None
                    and fitness.rank(m.lsn, m.priority, m.name) > mine)
    waited = 0.0 if s.leader_lost_at is None else s.now - s.leader_lost_at
    holders = sync.commit_holders(s.cluster, s.config, s.name)
    if holders and s.cluster.status.leader != s.name:
        # Only the most advanced synchronous standby is sure to hold every acknowledged commit
        # (quorum mode, or nothing recorded at all); never race it, however long it takes.
        ahead = [n for n in better if n in holders]
        if ahead:
            return _wait(f"no leader: synchronous standby {', '.join(ahead)} is more advanced")
    if better and waited < s.config.retry_timeout:
        if not answers_fresh(s, better):
            return Decision((AskPeers(tuple(better)),), f"no leader: asking {', '.join(better)} (more advanced) "
                                                         "whether their agents run")
        better = [n for n in better if n not in agents_gone(s, better)]
    if better and waited < s.config.retry_timeout:
        one = len(better) == 1
        return _wait(f"no leader: {', '.join(better)} {'is' if one else 'are'} more advanced, "
                     f"letting {'it' if one else 'them'} take over")
    unseen = failsafe.unseen(s)
    if unseen and waited < s.config.retry_timeout:
        return _wait(f"no leader: waiting for {', '.join(unseen)} (in the failsafe key) to publish "
                     f"{'its position' if len(unseen) == 1 else 'their positions'}")
    proof = _sync_proof(s)
    if proof is not None:
        return proof
    return Decision((AcquireLeader("no leader key and this node is the most advanced eligible replica"),),
                    "no leader: racing for the leader key")


def _sync_proof(s: Snapshot) -> Decision | None:
    """In synchronous mode a standby takes over only on live answers of the other synchronous
    standbys, asked after the leader was lost and within ``retry_timeout``: records can be a loop
    old, and a standby a loop behind on paper may hold commits nobody else has."""
    holders = sync.commit_holders(s.cluster, s.config, s.name)
    if s.name not in holders or s.cluster.status.leader == s.name:
        return None
    others = tuple(n for n in holders if n != s.name)
    if others and not answers_fresh(s, others):
        return Decision((AskPeers(others),), "no leader: asking the synchronous standbys for their positions")
    problem = sync.proof_problem(s)
    if problem is None:
        return None
    donor = _donor(s, holders)
    if donor is not None and s.pg.following != donor:
        return Decision((FollowLeader(donor, slot=False),),
                        f"no leader: {donor} (tagged nofailover) has received more; streaming the rest from it "
                        "before taking over")
    return _wait(f"no leader, not proven to hold every acknowledged commit: {problem}")


def _donor(s: Snapshot, holders: tuple[str, ...]) -> str | None:
    """The member to catch up from when only members that may never take over (``nofailover``)
    hold more than we do: the most advanced of them. Waiting for them would wait forever; once we
    hold what they hold, the proof passes and we take over with every acknowledged commit."""
    ahead = {n: p for n, p in s.peer_positions.items() if n in holders and n != s.name and p > s.pg.lsn}
    members = s.cluster.members
    if not ahead or any(n not in members or not members[n].nofailover for n in ahead):
        return None
    return max(ahead, key=lambda n: (ahead[n], n))
