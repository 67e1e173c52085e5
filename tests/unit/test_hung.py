"""A Postgres that lives but does not answer: the leader kills it after retry_timeout and
restarts it in place within what is left of ttl, else releases the key (killing what still
lives first); a hung replica is unhealthy, never a candidate, and left alone."""

from __future__ import annotations

from dataclasses import replace

from pgha.core import actions as a
from pgha.core import report
from pgha.core.decide import decide
from pgha.core.health import verdict
from pgha.core.jobs import Busy, Job
from pgha.core.snapshot import PgState
from tests.unit.test_decide import CFG, PRIMARY, REPLICA, snap, view

# hung since t=99 (the snapshot's now is 100; ttl 6, retry_timeout 2)
HUNG_PRIMARY = replace(PRIMARY, running=False, postmaster_alive=True, unresponsive=True, hung_since=99.0,
                       down_since=99.0)
KILLED_PRIMARY = replace(HUNG_PRIMARY, postmaster_alive=False, unresponsive=False)


def leader(pg: PgState, now: float = 100.0, **kw: object) -> a.Decision:
    return decide(snap(pg, view(), name="n1", now=now, lease_valid_until=now + 6, **kw))


def test_leader_waits_retry_timeout_before_killing_a_silent_postgres() -> None:
    d = leader(HUNG_PRIMARY)
    assert d.actions == () and "does not answer (for 1.0 s)" in d.note
    assert d.recheck == 1.0  # looks again soon, not after loop_wait: there is no primary meanwhile


def test_leader_kills_a_postgres_silent_for_retry_timeout() -> None:
    d = leader(HUNG_PRIMARY, now=101.0)
    assert [type(x) for x in d.actions] == [a.KillPostgres]
    assert d.note == "postgres on the leader does not answer: killing it to restart it in place"


def test_killed_leader_restarts_in_place_within_what_is_left_of_ttl() -> None:
    d = leader(KILLED_PRIMARY, now=102.0)
    assert d.actions == (a.StartPostgres(primary=True, timeout=3.0),)
    # a crash that was no hang keeps the usual bound: what is left of primary_start_timeout
    crashed = replace(PRIMARY, running=False, down_since=99.0)
    assert leader(crashed).actions == (a.StartPostgres(primary=True, timeout=29.0),)


def test_leader_restarting_after_a_hang_looks_again_soon_while_busy() -> None:
    assert leader(KILLED_PRIMARY, busy=Busy(Job.STARTING, "as primary")).recheck == 1.0
    assert leader(replace(PRIMARY, running=False), busy=Busy(Job.STARTING, "as primary")).recheck is None


def test_leader_not_back_within_ttl_of_the_hang_kills_what_lives_and_releases_the_key() -> None:
    d = leader(HUNG_PRIMARY, now=105.0)
    assert [type(x) for x in d.actions] == [a.KillPostgres, a.ReleaseLeader]
    assert "not back within ttl" in d.note
    starting = replace(KILLED_PRIMARY, postmaster_alive=True)  # restarted, refusing (crash recovery)
    assert [type(x) for x in leader(starting, now=105.0).actions] == [a.KillPostgres, a.ReleaseLeader]
    assert [type(x) for x in leader(KILLED_PRIMARY, now=105.0).actions] == [a.ReleaseLeader]


def test_postgres_that_answers_again_is_no_longer_hung() -> None:
    assert [type(x) for x in leader(PRIMARY).actions] == [a.PublishLeaderStatus]


def test_leader_without_a_safe_lease_leaves_the_hang_to_the_lease_rules() -> None:
    d = decide(snap(HUNG_PRIMARY, view(), name="n1", now=101.0, lease_valid_until=102.0))
    assert d.actions == ()


def test_primary_start_timeout_kills_a_still_starting_postmaster_before_releasing() -> None:
    cfg = CFG.model_copy(update={"primary_start_timeout": 10})
    starting = replace(PRIMARY, running=False, postmaster_alive=True, down_since=80.0)
    assert [type(x) for x in leader(starting, config=cfg).actions] == [a.KillPostgres, a.ReleaseLeader]


HUNG_REPLICA = replace(REPLICA, running=False, postmaster_alive=True, unresponsive=True, hung_since=90.0,
                       down_since=90.0, streaming=False)


def test_hung_replica_is_left_alone_and_never_races() -> None:
    d = decide(snap(HUNG_REPLICA, view()))
    assert d.actions == () and "reported unhealthy, not a candidate" in d.note
    assert decide(snap(HUNG_REPLICA, view(leader=None), leader_lost_at=80.0)).actions == ()


def test_hung_replica_answers_503_on_replica() -> None:
    r = report.NodeReport(name="n2", scope="demo", host="h", port=5432, api_url="x", version="t", tags={},
                          config=CFG, pg=HUNG_REPLICA)
    assert verdict("/replica", {}, report.health(r, 100.0)) == 503
    assert verdict("/replica", {}, report.health(replace(r, pg=REPLICA), 100.0)) == 200
