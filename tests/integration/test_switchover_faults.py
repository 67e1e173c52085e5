"""Faults in the middle of a switchover, after the old primary stopped and before the candidate
took over (synchronous mode, a writer committing throughout): exactly one node ends as the
primary and no acknowledged commit is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from pgha.testing import LocalCluster, Node, wait_for
from tests.conftest import sql
from tests.integration.test_pitr import Writer

pytestmark = pytest.mark.slow

DCS = {"ttl": 8, "loop_wait": 1, "retry_timeout": 3, "synchronous_mode": "on"}


def writable(n: Node) -> bool:
    try:
        return sql(n.dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001 - a node down is not writable
        return False


def test_candidate_killed_after_the_old_primary_stopped_leaves_one_primary_and_loses_nothing(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(dcs=DCS)
    c.start()
    old = c.leader()
    sql(old.dsn(), "CREATE TABLE w (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    candidate = c.node(wait_for("a synchronous standby", lambda: ((old.status() or {}).get("synchronous_standbys")
                                                                  or [None])[0], 30))
    writer = Writer(c.nodes)
    writer.start()
    try:
        wait_for("commits", lambda: len(writer.acked) > 20, 30)
        pid = old.postmaster_pid()
        asked = subprocess.Popen([sys.executable, "-m", "pgha", "switchover", "--candidate", candidate.name, "--force",
                                  "-c", str(old.config_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for("the old primary's postmaster gone", lambda: old.postmaster_pid() != pid, 30, interval=0.005)
        candidate.signal_agent(signal.SIGKILL)
        candidate.kill_postgres(signal.SIGKILL, tree=True)
        killed = time.monotonic()
        new = wait_for("a writable node", lambda: next((n for n in c.nodes if writable(n)), None), 60)
        took = time.monotonic() - killed
        asked.wait(60)
        n = len(writer.acked)
        wait_for("the writer commits on the new primary", lambda: len(writer.acked) > n + 10, 30)
    finally:
        writer.stop.set()
        writer.join(10)
    # The old primary holds every commit: it takes the cluster back, once, and keeps it.
    assert new is old, f"{new.name} took over, not the old primary"
    time.sleep(DCS["ttl"])
    assert [n.name for n in c.nodes if writable(n)] == [old.name] and c.leader() is old
    assert old.log_text().count(f"switchover to {candidate.name}: handing over") == 1, old.log_text()[-3000:]
    assert f"switchover to {candidate.name} given up" in old.log_text()
    # The command says so once the old primary withdrew the request, not after its wait's bound.
    said = asked.stdout.read().decode() if asked.stdout else ""
    assert asked.returncode != 0 and f"did not happen: {old.name} leads and withdrew the request" in said, said
    present = {r[0] for r in sql(new.dsn(), "SELECT id FROM w")}
    lost = sorted(w.id for w in writer.acked if w.id not in present)
    assert not lost, f"acknowledged commits lost: {lost[:10]}"
    print(f"{new.name} took writes {took:.1f} s after the candidate was killed mid-switchover")
    candidate.start()
    wait_for(f"{candidate.name} streams again", lambda: candidate.health("/replica") == 200, 90)
