"""Cutting a standby's pg_wal at the fork pg_rewind named, on real files."""

from __future__ import annotations

from pathlib import Path

from pgha.postgres import walcut

SEG = 16 << 20


def _wal(tmp_path: Path, *names: str) -> Path:
    wal = tmp_path / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for name in names:
        (wal / name).write_bytes(b"\x01" * SEG)
    return wal


def test_the_fork_and_its_timeline_are_read_from_pg_rewinds_output() -> None:
    out = ("pg_rewind: servers diverged at WAL location 1/50222E8 on timeline 3\n"
           "pg_rewind: no rewind required\n")
    assert walcut.diverged_at(out) == ((1 << 32) + 0x50222E8, 3)
    assert walcut.diverged_at("pg_rewind: source and target cluster are on the same timeline\n") is None


def test_the_old_timelines_wal_past_the_fork_goes_and_the_rest_stays(tmp_path: Path) -> None:
    fork = 0x5000000 + 0x222E8  # in segment 5
    wal = _wal(tmp_path, "000000010000000000000004", "000000010000000000000005", "000000010000000000000006",
               "000000010000000100000000", "000000020000000000000005", "000000020000000000000006",
               "000000010000000000000007.partial", "00000002.history")
    (wal / "archive_status" / "000000010000000000000006.ready").touch()
    changed = walcut.cut(wal, 1, fork, SEG)
    assert changed == ["000000010000000000000005", "000000010000000000000006",
                       "000000010000000000000007.partial", "000000010000000100000000"]
    left = sorted(p.name for p in wal.iterdir() if p.is_file())
    assert left == ["000000010000000000000004", "000000010000000000000005", "00000002.history",
                    "000000020000000000000005", "000000020000000000000006"]
    assert not (wal / "archive_status" / "000000010000000000000006.ready").exists()
    cut = (wal / "000000010000000000000005").read_bytes()
    assert len(cut) == SEG and cut[:0x222E8] == b"\x01" * 0x222E8 and not any(cut[0x222E8:])
    assert (wal / "000000020000000000000005").read_bytes() == b"\x01" * SEG  # the new timeline's: untouched


def test_a_segment_of_an_older_timeline_past_the_fork_goes_too_and_nothing_before_it(tmp_path: Path) -> None:
    wal = _wal(tmp_path, "000000010000000000000003", "000000010000000000000009", "000000020000000000000004")
    assert walcut.cut(wal, 2, 0x4000100, SEG) == ["000000010000000000000009", "000000020000000000000004"]
    assert (wal / "000000010000000000000003").read_bytes() == b"\x01" * SEG


def test_nothing_is_changed_when_pg_wal_holds_nothing_from_the_fork_on(tmp_path: Path) -> None:
    wal = _wal(tmp_path, "000000010000000000000003")
    assert walcut.cut(wal, 1, 0x5000000, SEG) == []
