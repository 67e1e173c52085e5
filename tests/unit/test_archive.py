"""The archiver's health as /archive, /patroni and pgha list judge it (``core.archive``), and the
parameters the ``archive`` section sets."""

from __future__ import annotations

import pytest

from pgha.config.model import DynamicConfig
from pgha.core import archive, parameters
from pgha.core.archive import ArchiveState

NOW = 1_800_000_000.0
HEALTHY = ArchiveState(mode="on", archived=10, last_archived_wal="0000000100000000000000AA", last_archived_at=NOW - 3600)


def test_idle_primary_with_nothing_waiting_is_healthy_however_old_its_last_success() -> None:
    assert archive.problem(HEALTHY, True, NOW, 300) is None
    assert archive.flag(HEALTHY, True, NOW, 300) == ""


def test_segment_waiting_past_the_bound_pages_and_names_the_failure() -> None:
    broken = ArchiveState(mode="on", archived=10, failed=4, last_archived_at=NOW - 900, last_failed_at=NOW - 5,
                          last_failed_wal="0000000100000000000000AB", backlog=2, oldest_waiting_at=NOW - 400)
    why = archive.problem(broken, True, NOW, 300)
    assert why is not None and "2 WAL segment(s)" in why and "0000000100000000000000AB" in why
    assert archive.flag(broken, True, NOW, 300) == "failing (0000000100000000000000AB)"
    assert archive.problem(broken, True, NOW, 600) is None  # within the bound: not yet


def test_slow_archive_without_failures_is_behind() -> None:
    slow = ArchiveState(mode="on", archived=10, last_archived_at=NOW - 1, backlog=50, oldest_waiting_at=NOW - 400)
    assert archive.flag(slow, True, NOW, 300) == "behind"


def test_replica_does_not_archive_with_mode_on_and_archiving_off_pages() -> None:
    waiting = ArchiveState(mode="on", backlog=3, oldest_waiting_at=NOW - 1000)
    assert archive.problem(waiting, False, NOW, 300) is None
    assert archive.problem(ArchiveState(mode="off"), True, NOW, 300) == "archiving is off (archive_mode = off)"
    assert archive.problem(None, True, NOW, 300) == "postgres is not running"


def test_from_row_reads_the_probe_columns() -> None:
    s = ArchiveState.from_row({"mode": "on", "archived": 3, "failed": 1, "last_archived_wal": None,
                               "last_archived": None, "last_failed_wal": "X", "last_failed": NOW, "ready": 2,
                               "oldest_ready": NOW - 10})
    assert s is not None and s.failing and s.backlog == 2 and s.waiting_for(NOW) == 10
    assert ArchiveState.from_row(None) is None


def test_pgbackrest_stanza_sets_archive_and_restore_commands_and_parameters_still_win() -> None:
    cfg = DynamicConfig.model_validate({"archive": {"pgbackrest": {"stanza": "main", "config": "/etc/pb.conf"}}})
    p = parameters.wanted(cfg, None)
    assert p["archive_mode"] == "on"
    assert p["archive_command"] == "pgbackrest --config=/etc/pb.conf --stanza=main archive-push %p"
    assert p["restore_command"] == 'pgbackrest --config=/etc/pb.conf --stanza=main archive-get %f "%p"'
    mine = cfg.model_copy(update={"postgresql": cfg.postgresql.model_copy(update={"parameters": {"archive_mode": "always"}})})
    assert parameters.wanted(mine, None)["archive_mode"] == "always"


def test_bad_archive_sections_are_refused() -> None:
    with pytest.raises(ValueError, match="pgbackrest"):
        DynamicConfig.model_validate({"archive": {"max_delay": 10}})
    with pytest.raises(ValueError, match="one line"):
        DynamicConfig.model_validate({"archive": {"command": "cp %p /a/%f\nrm -rf /"}})
    with pytest.raises(ValueError):
        DynamicConfig.model_validate({"archive": {"pgbackrest": {"stanza": "a b"}}})


def test_a_new_primary_hands_back_only_earlier_timelines_segments_the_repository_lacks() -> None:
    done = ["000000010000000000000007", "000000010000000000000008", "000000020000000000000009",
            "00000001.history", "000000010000000000000006.partial", "junk"]
    assert archive.stranded(done, 2) == ["000000010000000000000007", "000000010000000000000008"]
    assert archive.stranded(done, 1) == []
    assert archive.archive_id(["archive.info", "archive.info.copy", "15-1", "15-2", "9-10"]) == "9-10"
    assert archive.archive_id(["archive.info"]) is None
    held = ["000000010000000000000007-1f0c2d3e4b5a69788796a5b4c3d2e1f00f1e2d3c.gz", "WARN: something"]
    assert archive.missing(["000000010000000000000007", "000000010000000000000008"], held) == [
        "000000010000000000000008"]
