"""The fence outlives the agent: a frozen or killed agent never leaves a writable Postgres behind
for clients that connect straight to it. Real etcd, Postgres and agents; the old primary is
written to directly (as libpq multi-host clients and poolers do), not through HAProxy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from pgha.testing import LocalCluster, Node, wait_for
from tests.conftest import sql
from tests.direct import writing_to

pytestmark = pytest.mark.slow
FENCE = Path(__file__).resolve().parents[2] / "pgha" / "fence" / "__main__.py"


def first_write_elsewhere(c: LocalCluster, old: Node, timeout: float) -> tuple[Node, float]:
    """The node that took over and when it first acknowledged a write of ours."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in c.nodes:
            if n is old:
                continue
            try:
                sql(n.dsn(), "INSERT INTO direct VALUES (now())")
                return n, time.monotonic()
            except Exception:  # noqa: BLE001 - read-only or down: keep trying
                pass
        time.sleep(0.05)
    raise TimeoutError("no other node took writes")


def accepts_connections(node: Node) -> bool:
    try:
        sql(node.dsn(), "SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


def fired(node: Node) -> int:
    p = Path(f"{node.data_dir}.fence.fired")
    return len(p.read_text().splitlines()) if p.exists() else 0


def started(make_cluster: Callable[..., LocalCluster]) -> tuple[LocalCluster, Node]:
    c = make_cluster()
    c.start()
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE direct (at timestamptz)")
    wait_for("the leader's fence armed", lambda: (leader.status() or {}).get("fence", {}).get("armed"), 10)
    return c, leader


def test_frozen_agent_leaves_no_writable_primary_behind(make_cluster: Callable[..., LocalCluster]) -> None:
    c, old = started(make_cluster)
    assert old.proc is not None
    with writing_to(old) as w:
        old.proc.send_signal(signal.SIGSTOP)
        try:
            new, first = first_write_elsewhere(c, old, 30)
            time.sleep(1)  # let the writer try the old primary a while longer
            late = [t for t in w.acks if t >= first]
            assert not late, f"{old.name} acknowledged {len(late)} writes after {new.name} took its first"
            assert fired(old) == 1 and not accepts_connections(old)
        finally:
            old.proc.send_signal(signal.SIGCONT)
    wait_for(f"{old.name} back as a replica", lambda: old.health("/replica") == 200, 60)
    assert len(c.primaries()) == 1


def test_killed_agent_leaves_no_writable_primary_behind(make_cluster: Callable[..., LocalCluster]) -> None:
    c, old = started(make_cluster)
    with writing_to(old) as w:
        old.signal_agent(signal.SIGKILL)  # Postgres keeps running, nobody restarts the agent
        new, first = first_write_elsewhere(c, old, 30)
        time.sleep(1)
        late = [t for t in w.acks if t >= first]
        assert not late, f"{old.name} acknowledged {len(late)} writes after {new.name} took its first"
    assert fired(old) == 1 and not accepts_connections(old)


def test_a_killed_fence_is_started_again_and_the_primary_stays(make_cluster: Callable[..., LocalCluster]) -> None:
    c, leader = started(make_cluster)
    first = leader.fence_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for("a new fence", lambda: leader.fence_pid() not in (None, first), 5)
    time.sleep(2)
    assert c.leader().name == leader.name and fired(leader) == 0


def test_pause_disarms_the_fence_and_resume_arms_it(make_cluster: Callable[..., LocalCluster]) -> None:
    c, leader = started(make_cluster)

    def armed() -> bool:
        return bool((leader.status() or {}).get("fence", {}).get("armed"))

    run = [sys.executable, "-m", "pgha"]
    subprocess.run([*run, "pause", "-c", str(leader.config_path), "--wait"], check=True, timeout=60)
    wait_for("fence disarmed", lambda: not armed(), 10)
    assert leader.fence_pid() is None
    subprocess.run([*run, "resume", "-c", str(leader.config_path), "--wait"], check=True, timeout=60)
    wait_for("fence armed again", armed, 10)
    assert c.leader().name == leader.name


def writable(node: Node) -> bool:
    try:
        return sql(node.dsn(), "SELECT NOT pg_is_in_recovery()")[0][0] is True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_the_fence_watches_postgres_from_the_moment_bootstrap_makes_it_writable(
        make_cluster: Callable[..., LocalCluster]) -> None:
    # The bootstrap job makes Postgres writable between two looks of the loop: an agent killed
    # then must find a fence already watching (it was disarmed while the job ran, before).
    c = make_cluster(nodes=1)
    n = c.nodes[0]
    state = Path(f"{n.data_dir}.fence")
    c.start(wait=False)
    unguarded, seen = 0, 0
    end = time.monotonic() + 90
    while time.monotonic() < end and not (seen and n.health("/primary") == 200):
        if writable(n):
            seen += 1
            unguarded += not state.exists() or n.fence_pid() is None
        time.sleep(0.01)
    assert seen, "postgres never took writes"
    assert unguarded == 0, f"postgres took writes unguarded by a fence in {unguarded} of {seen} looks"


@contextmanager
def fenced_stand_in(tmp_path: Path, deadline_in: float) -> Iterator[tuple[Path, subprocess.Popen[bytes],
                                                                             subprocess.Popen[bytes], float]]:
    """A stand-in postmaster (its command line names postgres) under a fence armed to fire
    ``deadline_in`` seconds from now: (data_dir, stand-in, fence, deadline)."""
    data = tmp_path / "data"
    data.mkdir()
    dummy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "postgres"])
    try:
        (data / "postmaster.pid").write_text(f"{dummy.pid}\n")
        deadline = time.clock_gettime(time.CLOCK_BOOTTIME) + deadline_in
        Path(f"{data}.fence").write_text(f"{deadline}\n")
        fence = subprocess.Popen([sys.executable, str(FENCE), str(data)], start_new_session=True)
        yield data, dummy, fence, deadline
    finally:
        dummy.kill()


def test_fence_stops_the_postmaster_once_its_deadline_passes(tmp_path: Path) -> None:
    with fenced_stand_in(tmp_path, 0.5) as (data, dummy, fence, deadline):
        assert dummy.wait(5) == -signal.SIGKILL
        assert fence.wait(5) == 0 and "late=" in Path(f"{data}.fence.fired").read_text()
        assert time.clock_gettime(time.CLOCK_BOOTTIME) >= deadline


def test_disarmed_fence_exits_and_leaves_postgres_alone(tmp_path: Path) -> None:
    with fenced_stand_in(tmp_path, 30) as (data, dummy, fence, _):
        time.sleep(0.3)
        Path(f"{data}.fence").unlink()
        assert fence.wait(5) == 0 and dummy.poll() is None


def test_deadline_moved_earlier_is_obeyed_at_once_though_an_idle_fence_looks_once_a_second(tmp_path: Path) -> None:
    """The agent moves the deadline earlier (a ttl change's retiring lease) and signals the fence,
    which sleeps up to ``LOOK`` (1 s) between looks at its file while the deadline is far."""
    from pgha.agent.fence import Fence

    with fenced_stand_in(tmp_path, 30) as (data, dummy, fence, _):
        agent_side = Fence(str(data))
        agent_side.deadline = time.monotonic() + 30  # as armed before
        wait_for("the fence's pid", lambda: agent_side.pid() == fence.pid, 5)
        time.sleep(0.2)  # the fence now waits out its look
        moved = time.monotonic()
        agent_side.arm(moved + 0.05)
        assert dummy.wait(5) == -signal.SIGKILL
        assert time.monotonic() - moved < 0.6  # not one LOOK later: the signal woke it
        assert fence.wait(5) == 0


def test_disarm_ends_an_idle_fence_at_once(tmp_path: Path) -> None:
    from pgha.agent.fence import Fence

    with fenced_stand_in(tmp_path, 30) as (data, dummy, fence, _):
        agent_side = Fence(str(data))
        agent_side.deadline = time.monotonic() + 30
        wait_for("the fence's pid", lambda: agent_side.pid() == fence.pid, 5)
        time.sleep(0.2)
        agent_side.disarm("test")
        assert fence.wait(0.6) == 0 and dummy.poll() is None


def test_fence_kills_the_backends_too_though_each_leads_its_own_session(tmp_path: Path) -> None:
    """A backend outlives a SIGKILLed postmaster long enough to commit the statement it runs and
    acknowledge it (an INSERT 3.4 s later, measured on Postgres 15); and each one calls setsid(),
    so a kill of the postmaster's process group misses it."""
    data = tmp_path / "data"
    data.mkdir()
    backend_pid = tmp_path / "backend.pid"
    script = ("import subprocess, sys, time\n"
              "b = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
              f"open({str(backend_pid)!r}, 'w').write(str(b.pid))\n"
              "time.sleep(60)\n")
    postmaster = subprocess.Popen([sys.executable, "-c", script, "postgres"], start_new_session=True)
    try:
        wait_for("the stand-in backend", lambda: backend_pid.exists() and backend_pid.read_text(), 10)
        backend = int(backend_pid.read_text())
        (data / "postmaster.pid").write_text(f"{postmaster.pid}\n")
        Path(f"{data}.fence").write_text(f"{time.clock_gettime(time.CLOCK_BOOTTIME) + 0.3}\n")
        fence = subprocess.Popen([sys.executable, str(FENCE), str(data)], start_new_session=True)
        assert postmaster.wait(5) == -signal.SIGKILL and fence.wait(5) == 0
        wait_for("the backend killed with its postmaster", lambda: not Path(f"/proc/{backend}").exists()
                 or Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 2)
        assert "backends=1" in Path(f"{data}.fence.fired").read_text()
    finally:
        postmaster.kill()
        if backend_pid.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(backend_pid.read_text()), signal.SIGKILL)


def test_statement_in_flight_when_the_fence_fires_is_never_acknowledged(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c, old = started(make_cluster)
    assert old.proc is not None
    old.proc.send_signal(signal.SIGSTOP)  # the fence's deadline moves no more
    try:
        deadline = float(Path(f"{old.data_dir}.fence").read_text().split()[0])
        with psycopg.connect(old.dsn(), autocommit=True) as conn:
            while time.clock_gettime(time.CLOCK_BOOTTIME) < deadline - 1.0:
                time.sleep(0.05)
            started_at = time.clock_gettime(time.CLOCK_BOOTTIME)
            with pytest.raises(psycopg.OperationalError):
                # a few seconds of CPU, then one row: the fence fires in the middle
                conn.execute("INSERT INTO direct SELECT now() FROM (SELECT count(*) FROM generate_series(1, 60000000)) s")
        assert started_at < deadline and fired(old) == 1
    finally:
        old.proc.send_signal(signal.SIGCONT)
    # thawed before its lease ran out, the old primary may well lead again (restarted in place)
    leader = c.wait_healthy(60)
    assert sql(leader.dsn(), "SELECT count(*) FROM direct")[0][0] == 0  # never committed anywhere
