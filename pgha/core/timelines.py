"""Where this node's data stands against the cluster's timelines (pure): whether it may take
writes again without a promotion, whether it forked off the leader's timeline, whether a
switchover's old primary stopped before the new timeline began."""

from __future__ import annotations

from pgha.core.snapshot import PgState, Snapshot


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def switch_point(history: str, timeline: int) -> int | None:
    """Where ``timeline`` ended, from a timeline history file's text (``<parent> <lsn> <reason>``
    per line): the first byte the newer timeline does not share with it."""
    for line in history.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and int(parts[0]) == timeline:
            return parse_lsn(parts[1])
    return None


def was_last_primary(s: Snapshot) -> bool:
    """Our data directory is the last primary's, on the newest timeline: it may take writes again
    without a promotion. Anything else (we acquired the key as a standby, or another node
    promoted since) starts read-only and promotes onto a new timeline."""
    pg = s.pg
    return (pg.primary_on_timeline == pg.timeline and s.cluster.status.leader == s.name
            and pg.timeline >= s.cluster.max_timeline)


def past_fork(s: Snapshot, leader: str) -> int | None:
    """The fork point of the leader's timeline when this replica received WAL beyond it on the
    old timeline (it was ahead of the node that won): it cannot stream until rewound. A replica
    that still streams is not forked (the recorded fork point can be a loop older than the real).
    Our timeline may have ended more than once (two nodes promoted from it, one after the other):
    past the earliest of those ends, we cannot tell which branch the leader is on, and pg_rewind
    finds out. The history cannot show every fork (it was wiped, or the leader's branch left an
    ancestor of ours), so a standby stalled for a whole ttl behind the leader's timeline is
    rewound too; pg_rewind finds the divergence itself, or finds none."""
    pg, m = s.pg, s.cluster.members.get(leader)
    if pg.streaming or m is None or m.timeline <= pg.timeline:
        return None
    ends = [h.lsn for h in s.cluster.history if h.timeline == pg.timeline]
    # pg_rewind already compared our WAL with this leader timeline's (and found it followed, or
    # rewound it): a recorded end a loop older than the real fork made a replica that had not
    # streamed again yet rewind for nothing, again and again (the matrix: a lossy link).
    checked = pg.rewound_onto is not None and m.timeline <= pg.rewound_onto
    if ends and pg.lsn > min(ends) and not checked:
        return min(ends)
    stalled = pg.stalled_since is not None and s.now - pg.stalled_since > s.config.ttl
    return pg.lsn if stalled else None


def ends_before_fork(s: Snapshot) -> bool:
    """An old primary, running read-only, whose WAL ends at or before every recorded end of the
    timeline it wrote on: it may simply follow the leader (Patroni's check). A standby opens for
    reads only after replaying all the WAL in pg_wal (crash recovery comes first), so its
    replayed position is where its own WAL ends. The recorded ends are numbers in etcd, which a
    lost history or a reused timeline number can make wrong, so this only lets Postgres try:
    Postgres refuses a timeline that forked before its replay point, checking the leader's own
    history file (``switched_onto_newer``), and a refused standby stalls and is rewound."""
    pg = s.pg
    ends = [h.lsn for h in s.cluster.history if h.timeline == pg.primary_on_timeline]
    return pg.running and pg.in_recovery and bool(ends) and pg.lsn <= min(ends)


def start_to_look(s: Snapshot) -> bool:
    """An old primary whose Postgres is down (killed, fenced, crashed) starts read-only before
    any rewind when the end of the timeline it wrote on is recorded: crash recovery replays all
    its WAL before it opens, and then ``ends_before_fork`` and Postgres's own check decide, as for
    one demoted while running (Patroni starts it and checks, too). A rewind that is needed
    costs one start more; one that is not saves the rewind (the matrix: a link down, 6 s against
    Patroni's 1 s). A start that failed since it went down goes straight to pg_rewind, which
    needs no start."""
    pg = s.pg
    return not pg.start_failed_since_down and any(h.timeline == pg.primary_on_timeline for h in s.cluster.history)


def switched_onto_newer(pg: PgState) -> bool:
    """Postgres, read-only, streams or replays a timeline newer than the one this directory last
    wrote on: it accepted that timeline's fork as at or after its own end, so nothing diverged."""
    return (pg.running and pg.in_recovery and pg.primary_on_timeline is not None
            and pg.timeline > pg.primary_on_timeline)


def clean_handover(s: Snapshot, leader: str) -> bool | None:
    """Whether our WAL ends before the leader's timeline forked (no rewind needed); None while the
    leader has not recorded its promotion yet."""
    pg = s.pg
    if pg.handover_lsn is None or pg.following != leader:
        return False
    fork = next((h for h in s.cluster.history if h.timeline == pg.primary_on_timeline), None)
    if fork is None:
        m = s.cluster.members.get(leader)
        return None if m is None or m.timeline <= (pg.primary_on_timeline or 0) else False
    return fork.lsn > pg.handover_lsn
