"""Reading a starting server's log: only what it appended since the start, whole lines only, and
the one message that means the standby can never open."""

from __future__ import annotations

from pathlib import Path

from pgha.postgres.startup import LogTail, log_size, wal_gone

GONE = ("2026-11-28 05:15:33.277 GMT [28065] FATAL:  could not receive data from WAL stream: ERROR:  "
        "requested WAL segment 000000080000000000000011 has already been removed\n")


def test_the_tail_reads_what_was_appended_since_the_start_in_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "pg.log"
    log.write_text("an earlier start: " + GONE)
    tail = LogTail(log, log_size(log))
    assert tail.read() == ""
    with log.open("a") as f:
        f.write(GONE[:60])  # the server is mid-line
    assert tail.read() == ""
    with log.open("a") as f:
        f.write(GONE[60:])
    assert wal_gone(tail.read()) == "000000080000000000000011"
    assert tail.read() == ""


def test_a_missing_log_reads_as_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.log"
    assert log_size(missing) == 0 and LogTail(missing, 0).read() == ""
    assert wal_gone("LOG:  started streaming WAL from primary at 0/11000000 on timeline 7") is None
