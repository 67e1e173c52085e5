"""The old leader's side of a planned switchover, once a healthy candidate is chosen: let a
lagging candidate catch up, pause the poolers (``core.poolers``), cut what holds them past the
bound, then hand over. Pure: a function of one Snapshot."""

from __future__ import annotations

from pgha.core import election, poolers
from pgha.core.actions import Action, AnnounceHandover, CancelTransactions, ClearFailover, Decision, HandOver
from pgha.core.snapshot import Snapshot

REPLAY_SLACK = 16 << 20  # bytes of replay lag a switchover candidate may have (one WAL segment)
REPLAY_WAIT = 30.0  # seconds a switchover waits for its candidate to replay that close


def hand_over(s: Snapshot, candidate: str, first: tuple[Action, ...]) -> Decision:
    """Hand over once every pooler has paused (or the bound for that ran out)."""
    c = s.cluster
    behind = s.pg.lsn - c.members[candidate].replayed_lsn
    asked_for = 0.0 if s.failover_seen_at is None else s.now - s.failover_seen_at
    m = c.members[candidate]
    if m.following == s.name and candidate not in s.pg.replica_lsns:
        # Its record outlives it by a ttl: a candidate that died (during the poolers' handshake, or
        # between an earlier hand-over and its promotion) would be handed the cluster again and
        # again. One that just reconnected shows up in pg_stat_replication within a loop; one whose
        # host refused our ask (we took the key back from it) has no agent to reconnect, and
        # strict synchronous mode holds every commit for it until the request goes.
        if c.handover is not None or asked_for > s.config.retry_timeout or election.agents_gone(s, (candidate,)):
            return Decision((ClearFailover(f"candidate {candidate} no longer streams from {s.name}"),),
                            f"switchover to {candidate} given up: it no longer streams from {s.name}")
        return Decision(first, f"switchover to {candidate}: waiting for it to stream from {s.name}", recheck=0.2)
    if c.handover is None and behind > REPLAY_SLACK and asked_for < REPLAY_WAIT:
        # A candidate far behind on replay would keep clients paused while it catches up: let it
        # catch up first, while we still take writes (bounded; then it replays before promoting).
        return Decision(first, f"switchover to {candidate}: waiting for it to replay ({behind} bytes behind)",
                        recheck=0.2)
    bound = s.config.pooler_pause_timeout
    g = poolers.gate(c.poolers, c.handover, s.name, candidate, s.wall_now, bound)
    if g.announce:
        return Decision((*first, AnnounceHandover(candidate)),
                        f"switchover to {candidate}: asking {len(c.poolers)} pooler(s) to pause", recheck=0.02)
    if g.waiting:
        return Decision(first, f"switchover to {candidate}: waiting for pooler(s) {', '.join(g.waiting)} to pause",
                        recheck=0.02)
    if g.cut:
        # Repeated at each recheck: a client may send its next statement before its rollback.
        why = f"pooler(s) {', '.join(g.cut)} still pausing after {bound:g} s"
        return Decision((*first, CancelTransactions(why)),
                        f"switchover to {candidate}: cancelling the transactions still open ({why})", recheck=0.02)
    if c.handover is not None and m.following == s.name and candidate not in s.pg.replica_lsns:
        return Decision((ClearFailover(f"candidate {candidate} no longer streams from {s.name}"),),
                        f"switchover to {candidate} given up: it no longer streams from {s.name}")
    note = f"switchover to {candidate}: handing over"
    if g.late:
        note += f" (pooler(s) {', '.join(g.late)} did not pause within {bound:g} s)"
    return Decision((*first, HandOver(candidate)), note)
