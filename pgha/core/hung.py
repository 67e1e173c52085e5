"""A Postgres that does not answer: its postmaster lives, but no look at it is answered within
the observation deadline (a storage stall, where processes block in the kernel; SIGSTOP).

On the leader nobody else may take over while it holds the key, so a hang is a cluster without
a primary. After ``retry_timeout`` of silence (a look at a healthy local Postgres answers in
milliseconds; one that stays silent that long is not coming back soon) the leader kills the
postmaster and its backends (``KillPostgres``) and the crash rules restart it in place, within
what is left of ``ttl`` since the hang began. If it is not back by then (the stall goes on, it
cannot start, it could not even be killed) the leader kills what still lives and releases the
key: a replica takes over, as it would had the node died.

A hung replica blocks nobody: it is reported unhealthy (Postgres counts as not running, so
``/replica`` answers 503 and it is never a candidate) and left alone, to answer again."""

from __future__ import annotations

from pgha.core.actions import Decision, KillPostgres, ReleaseLeader
from pgha.core.snapshot import Snapshot


def silent_for(s: Snapshot) -> float | None:
    """Seconds since Postgres last went silent (None: it answers, or it never hung)."""
    return None if s.pg.hung_since is None else s.now - s.pg.hung_since


def decide(s: Snapshot) -> Decision | None:
    """What a hang asks of this node now (None: the ordinary rules apply)."""
    silent, pg = silent_for(s), s.pg
    if silent is None:
        return None
    if s.cluster.leader != s.name:
        if pg.unresponsive:
            return Decision((), f"postgres does not answer (for {silent:.1f} s): reported unhealthy, not a candidate")
        return None
    if not s.holds_lease():
        return None  # the lease rules: it takes no writes, and the key is about to go anyway
    if silent >= s.config.ttl:
        why = f"postgres hung {silent:.0f} s ago and is not back within ttl"
        kill = (KillPostgres(why),) if pg.postmaster_alive else ()
        return Decision((*kill, ReleaseLeader(why)), f"{why}: releasing the leader key")
    if not pg.unresponsive:
        return None  # killed, or starting again: the crash rules restart it in place
    if silent >= s.config.retry_timeout:
        return Decision((KillPostgres(f"postgres does not answer (for {silent:.1f} s)"),),
                        "postgres on the leader does not answer: killing it to restart it in place")
    # look again soon rather than after loop_wait: the cluster has no primary meanwhile
    return Decision((), f"postgres on the leader does not answer (for {silent:.1f} s)", recheck=1.0)


def start_timeout(s: Snapshot) -> float | None:
    """How long a restart in place may take after a hang: what is left of ttl (at least 1 s)."""
    silent = silent_for(s)
    return None if silent is None else max(1.0, s.config.ttl - silent)
