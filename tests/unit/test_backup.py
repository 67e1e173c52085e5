"""Base backups driven by the cluster, and point-in-time recovery (pure parts): cron schedules,
who takes a backup, when the schedule asks for one, pgBackRest's command lines and what a
finished recovery followed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pgha.config.model import DynamicConfig
from pgha.core import backup, cron, pitr
from pgha.core.backup import Backup
from pgha.core.cluster import ClusterView, Member
from pgha.core.requests import Refusal, backup_member, check_backup


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def view(backup_record: Backup | None = None, **states: str) -> ClusterView:
    members = {"n1": Member("n1", role="primary", state="running", lsn=100)}
    for name, state in states.items():
        members[name] = Member(name, role="replica", state=state, lsn=int(name[1:]) * 10)
    return ClusterView(members=members, leader="n1", backup=backup_record)


ARCHIVE = DynamicConfig.model_validate({"archive": {"pgbackrest": {"stanza": "main"}}})


def test_cron_last_fire_is_the_latest_scheduled_minute_at_or_before_now() -> None:
    s = cron.parse("30 3 * * *")
    assert s.last_fire(ts("2026-12-05T03:30:00")) == ts("2026-12-05T03:30:00")
    assert s.last_fire(ts("2026-12-05T03:29:59")) == ts("2026-12-04T03:30:00")
    weekly = cron.parse("0 2 * * 0")  # Sundays; 2026-12-06 is a Sunday
    assert weekly.last_fire(ts("2026-12-08T12:00:00")) == ts("2026-12-06T02:00:00")
    assert cron.parse("*/15 * * * *").last_fire(ts("2026-12-05T10:44:00")) == ts("2026-12-05T10:30:00")
    # both day fields restricted: either matches, as in cron
    assert cron.parse("0 0 1 * 1").last_fire(ts("2026-12-05T10:00:00")) == ts("2026-12-01T00:00:00")


@given(st.integers(0, 59), st.integers(0, 23), st.floats(ts("2026-01-01T00:00:00"), ts("2028-01-01T00:00:00")))
def test_cron_daily_fire_is_within_a_day_and_on_the_minute(minute: int, hour: int, now: float) -> None:
    fired = cron.parse(f"{minute} {hour} * * *").last_fire(now)
    assert fired is not None and now - 86400 < fired <= now
    at = datetime.fromtimestamp(fired, timezone.utc)
    assert (at.hour, at.minute, at.second) == (hour, minute, 0)


@pytest.mark.parametrize("text, word", [("* * *", "5 fields"), ("61 * * * *", "minute"), ("* 24 * * *", "hour"),
                                        ("* * x * *", "day of month"), ("* * * * 8", "day of week"),
                                        ("*/0 * * * *", "minute")])
def test_bad_cron_schedules_name_the_field(text: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        cron.parse(text)
    with pytest.raises(ValidationError, match="backup.schedule"):
        DynamicConfig.model_validate({"backup": {"schedule": text}})


def test_the_most_caught_up_streaming_replica_takes_the_backup() -> None:
    assert backup_member(view(n2="streaming", n3="streaming"), "replica") == "n3"
    assert backup_member(view(n2="streaming", n3="running"), "replica") == "n2"
    assert backup_member(view(n2="streaming"), "primary") == "n1"
    refused = backup_member(view(n2="running"), "replica")
    assert isinstance(refused, Refusal) and refused.status == 412 and "--from primary" in refused.reason
    assert isinstance(backup_member(view(n2="streaming"), "n9"), Refusal)
    assert isinstance(backup_member(ClusterView(members={}), "replica"), Refusal)


def test_a_backup_needs_pgbackrest_a_known_type_and_none_running() -> None:
    assert check_backup(view(n2="streaming"), DynamicConfig(), "full") == Refusal(
        412, "backups need the archive section with pgbackrest: {stanza: ...}")
    bad = check_backup(view(n2="streaming"), ARCHIVE, "weekly")
    assert bad is not None and bad.status == 400
    running = check_backup(view(Backup("n2", state=backup.RUNNING), n2="streaming"), ARCHIVE, "full")
    assert running is not None and running.status == 409
    assert check_backup(view(Backup("n2", state=backup.DONE), n2="streaming"), ARCHIVE, "incr") is None


def test_schedule_fires_once_per_slot_and_is_carried_across_records() -> None:
    now = ts("2026-12-05T03:00:30")
    slot = ts("2026-12-05T03:00:00")
    assert backup.scheduled("0 3 * * *", view(n2="streaming"), now) == slot
    served = Backup("n2", state=backup.DONE, schedule_fired=slot, revision=7)
    assert backup.scheduled("0 3 * * *", view(served), now) is None
    # a manual backup later keeps the schedule's memory: no second run for the same slot
    manual = backup.request(view(served), "n1", "full", "pgha backup", ("h", 1, "/d"), now + 10)
    assert manual.schedule_fired == slot and manual.revision == 7 and not manual.standby
    assert backup.scheduled("0 3 * * *", view(backup.finished(manual, True, now + 20)), now + 30) is None
    # a running backup, a slot missed by more than the catch-up window, no schedule: nothing
    assert backup.scheduled("0 3 * * *", view(Backup("n2", state=backup.RUNNING)), now) is None
    assert backup.scheduled("0 3 * * *", view(), slot + backup.CATCH_UP + 1) is None
    assert backup.scheduled(None, view(), now) is None


def test_a_running_backup_whose_member_left_or_went_silent_is_stale() -> None:
    b = Backup("n2", state=backup.RUNNING, started=1000.0)
    assert backup.stale(view(b, n2="streaming"), 1100.0, 3600) is None
    assert "left the cluster" in (backup.stale(view(b), 1100.0, 3600) or "")
    assert "within backup.timeout" in (backup.stale(view(b, n2="streaming"), 5000.0, 3600) or "")
    assert backup.stale(view(backup.finished(b, True, 1200.0)), 9999.0, 1) is None


def test_each_member_takes_its_own_turn_and_only_the_leader_fails_or_schedules() -> None:
    requested, running = Backup("n2", state=backup.REQUESTED), Backup("n2", state=backup.RUNNING, started=1000.0)
    step = backup.next_step
    assert step(view(requested, n2="streaming"), "n2", False, False, 1100.0, 3600, None).kind == "start"
    assert step(view(requested, n2="streaming"), "n3", False, False, 1100.0, 3600, None).kind == "none"
    # its own running backup with no task here: the agent restarted during it
    assert step(view(running, n2="streaming"), "n2", False, False, 1100.0, 3600, None).kind == "interrupted"
    assert step(view(running, n2="streaming"), "n2", True, False, 1100.0, 3600, None).kind == "none"
    # the leader fails a stale backup, never the one it runs itself
    failed = step(view(running, n2="streaming"), "n1", False, True, 9000.0, 3600, None)
    assert failed.kind == "fail" and "backup.timeout" in failed.reason
    mine = Backup("n1", state=backup.RUNNING, started=1000.0)
    assert step(view(mine), "n1", True, True, 9000.0, 3600, None).kind == "none"
    # a replica never schedules; the leader serves the slot once
    now, slot = ts("2026-12-05T03:00:30"), ts("2026-12-05T03:00:00")
    assert step(view(None, n2="streaming"), "n2", False, False, now, 3600, "0 3 * * *").kind == "none"
    scheduled = step(view(None, n2="streaming"), "n1", False, True, now, 3600, "0 3 * * *")
    assert scheduled.kind == "schedule" and scheduled.fired == slot


@given(st.sampled_from([None, backup.REQUESTED, backup.RUNNING, backup.DONE, backup.FAILED]),
       st.sampled_from(["n1", "n2", "n3"]), st.booleans(), st.booleans(), st.floats(0, 1e6))
def test_a_replica_never_fails_schedules_or_starts_another_members_backup(
        state: str | None, me: str, running_here: bool, leading: bool, now: float) -> None:
    b = None if state is None else Backup("n2", state=state, started=1.0)
    step = backup.next_step(view(b, n2="streaming", n3="streaming"), me, running_here, leading, now, 10.0,
                            "* * * * *")
    if not leading:
        assert step.kind in ("none", "start", "interrupted")
    if step.kind in ("start", "interrupted"):
        assert b is not None and b.member == me and not running_here


def test_backup_record_round_trips_and_says_how_it_went() -> None:
    b = backup.finished(Backup("n2", started=10.0, primary=("10.0.0.1", 5432, "/pg")), True, 14.5, "20261205-1F")
    again = Backup.from_json(b.to_json(), 3)
    assert again is not None and again.primary == ("10.0.0.1", 5432, "/pg") and again.revision == 3
    assert b.progress() == "full backup on n2 (standby mode) done: 20261205-1F in 4.5 s"
    assert "primary" not in b.body() and Backup.from_json("{", 1) is None


def test_standby_backup_names_the_primary_as_pg2_and_reaches_it_remotely_only_across_hosts() -> None:
    b = Backup("n2", primary=("127.0.0.1", 5441, "/n1/data"))
    local = backup.argv(b, "main", "/etc/pgbackrest.conf", "/n2/data", 5442, "/tmp", "postgres", "127.0.0.1")
    assert "--pg2-path=/n1/data" in local and "--pg2-port=5441" in local
    assert not any(a.startswith("--pg2-host") for a in local)
    remote = backup.argv(Backup("n2", primary=("10.0.0.1", 5432, "/pg")), "main", "", "/pg", 5432, "/tmp",
                         "postgres", "10.0.0.2")
    assert "--pg2-host=10.0.0.1" in remote
    assert backup.label("P00 INFO: new backup label = 20261205-191058F\n") == "20261205-191058F"


def test_restore_targets_and_their_errors() -> None:
    t = pitr.Target.parse("2026-12-05T19:10:58.5+00:00", None)
    assert t.options() == ["--type=time", "--target=2026-12-05 19:10:58.500000+00:00", "--target-action=promote"]
    assert pitr.Target.parse(None, "0/5000060").options()[:2] == ["--type=lsn", "--target=0/5000060"]
    assert pitr.Target.parse(None, None).options() == ["--type=default"]
    for time_text, lsn, word in (("2026-12-05T19:10:58", None, "time zone"), ("yesterday", None, "ISO 8601"),
                                 (None, "5000060", "WAL position"), ("2026-12-05T00:00:00+00:00", "0/1", "not both")):
        with pytest.raises(ValueError, match=word):
            pitr.Target.parse(time_text, lsn)
    argv = pitr.restore_argv("main", "", "/restore", t)
    assert "--archive-mode=off" in argv and argv[-1] == "restore"


def test_recovery_path_is_read_from_the_new_timelines_history() -> None:
    # recovery aimed at timeline 4 (the latest) but stopped at 0/3000100, on timeline 1
    history = {"00000005.history": "1\t0/5000000\tno recovery target specified\n"
                                   "2\t0/7000000\tno recovery target specified\n"
                                   "3\t0/9000000\tno recovery target specified\n"
                                   "4\t0/3000100\tbefore 2026-12-05 19:10:58+00\n",
               "00000004.history": "ignored"}
    assert pitr.followed(history) == pitr.Followed(1, "0/3000100", 5)
    history["00000005.history"] = "1\t0/5000000\tx\n2\t0/8000000\tafter\n"
    assert pitr.followed(history) == pitr.Followed(2, "0/8000000", 5)
    assert pitr.followed({}) is None


def test_cron_fire_a_fraction_of_a_microsecond_before_the_minute_is_not_that_minute() -> None:
    # hypothesis found it: fromtimestamp rounded 1830297599.9999998 up to the next minute
    fired = cron.parse("0 0 * * *").last_fire(1830297599.9999998)
    assert fired is not None and fired <= 1830297599.9999998
