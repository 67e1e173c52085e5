"""Why a standby does not stream, read from its Postgres log (pure parsing, and a log file)."""

from __future__ import annotations

from pathlib import Path

from pgha.cli.table import footer
from pgha.core.cluster import ClusterView, Member
from pgha.postgres import walreceiver

PASSWORD = ('2026-12-05 23:45:53.704 GMT [32522] FATAL:  could not connect to the primary server: connection to '
            'server at "127.0.0.1", port 22111 failed: FATAL:  password authentication failed for user "replicator"')
REFUSED = ('2026-12-05 23:45:54.709 GMT [32535] FATAL:  could not connect to the primary server: connection to '
           'server at "127.0.0.1", port 22111 failed: Connection refused')
HBA = ('2026-12-05 23:45:54.709 GMT [32535] FATAL:  could not connect to the primary server: connection to server at '
       '"10.0.0.1", port 5432 failed: FATAL:  no pg_hba.conf entry for replication connection from host "10.0.0.2", '
       'user "replicator", no encryption')


def test_the_upstreams_own_words_are_kept_and_other_lines_ignored() -> None:
    assert walreceiver.reason(PASSWORD) == 'password authentication failed for user "replicator"'
    assert walreceiver.reason(REFUSED) == "Connection refused"
    assert walreceiver.reason(HBA) is not None and walreceiver.reason(HBA).startswith("no pg_hba.conf entry")
    assert walreceiver.reason("2026-12-05 LOG:  started streaming WAL from primary at 0/3000000 on timeline 1") is None


def test_the_newest_failure_in_the_log_tail_wins(tmp_path: Path) -> None:
    log = tmp_path / "pg.log"
    log.write_text("\n".join(["x" * 100] * 400 + [REFUSED, PASSWORD, "LOG:  something else"]) + "\n")
    assert walreceiver.last_error(str(log)) == 'password authentication failed for user "replicator"'
    assert walreceiver.last_error(str(tmp_path / "missing.log")) == ""


def test_pgha_list_says_why_a_replica_does_not_stream() -> None:
    view = ClusterView(leader="n1", members={"n1": Member("n1", role="primary", state="running"),
                                             "n2": Member("n2", role="replica", state="running",
                                                          stream_error="Connection refused")})
    assert " n2 does not stream: Connection refused" in footer(view, paused=False)
