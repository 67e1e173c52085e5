"""The fault catalogue of ``bench/matrix.py``: every scenario of the partition lab, for pgha and
for Patroni alike. Each injects its fault while the recorder writes, heals what it broke, and says
what it did (``Fault``); the matrix measures the rest from the recorded history. A scenario never
raises because the cluster did not recover: that is a result, recorded as such."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgha.testing import Node, http_request, wait_for
from pgha.testing.cluster import thaw
from tests.partition import FAULTS, Lab, Recorder, etcd_leader, heal_everything

# What a scenario must end with: a failover ("yes"), none ("no"), or at most one ("at most one").
YES, NO, AT_MOST_ONE = "yes", "no", "at most one"
CLOCKSTEP = Path(__file__).resolve().parents[1] / "bench" / "clockstep.c"


@dataclass
class Fault:
    old: Node  # the primary when the fault began
    began: float  # monotonic
    ended: float = 0.0  # when the injection ended (healed, or handed to the heal)
    note: str = ""  # what the run must say beside its figures (a missed window, a refusal)
    unwanted: int = 0  # a promotion the scenario forbids that the timelines alone do not show
    caused: int = 0  # failovers the run caused on purpose beyond the one the scenario allows


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Lab, Recorder], Fault]
    expect: tuple[str, str]  # in sync mode, in async mode
    what: str = ""  # the fault in a line, for the published table


def ttl(lab: Lab) -> float:
    return float(lab.cluster.dcs["ttl"])


def new_primary(lab: Lab, old: Node, timeout: float) -> Node | None:
    """Another node answering /primary within ``timeout``, or None."""
    try:
        return wait_for("a new primary", lambda: next((n for n in lab.cluster.primaries() if n is not old), None),
                        timeout, interval=0.2)
    except TimeoutError:
        return None


def writes_back(rec: Recorder, after: float, timeout: float) -> bool:
    try:
        wait_for("writes acknowledged again", lambda: rec.acked(after) > 20, timeout)
        return True
    except TimeoutError:
        return False


def kill_node(n: Node) -> None:
    """The whole node gone at once: agent, postmaster and backends."""
    n.signal_agent(signal.SIGKILL)
    n.kill_postgres(signal.SIGKILL, tree=True)


def wrapped(fault: Callable[[Lab, Recorder], Node]) -> Callable[[Lab, Recorder], Fault]:
    """A fault of tests/partition.FAULTS, which raises when writes do not come back."""
    def run(lab: Lab, rec: Recorder) -> Fault:
        began = time.monotonic()
        old = lab.cluster.leader()
        note = ""
        try:
            fault(lab, rec)
        except TimeoutError as exc:
            note = f"not recovered during the fault: {exc}"
        return Fault(old, began, time.monotonic(), note)
    return run


def primary_killed(lab: Lab, rec: Recorder) -> Fault:
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    kill_node(old)
    # Acks after the kill only: in asynchronous mode 20 arrive within the 0.1 s the kill takes.
    if not writes_back(rec, time.monotonic() + 0.5, ttl(lab) * 3):
        f.note = "no writes within 3 ttl"
    f.ended = time.monotonic()
    return f


def postgres_hung(lab: Lab, rec: Recorder) -> Fault:
    """The postmaster and every backend SIGSTOPped while the agent runs: a storage stall."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    pids = old.freeze_postgres()
    try:
        if not writes_back(rec, f.began + 1, ttl(lab) * 4):
            f.note = "no writes within 4 ttl"
    finally:
        thaw(pids)
    f.ended = time.monotonic()
    return f


def primary_and_sync_standby_killed(lab: Lab, rec: Recorder) -> Fault:
    """Both holders of the last acknowledged commit gone: in sync mode the survivor lacks commits
    and must not be promoted; after 3 ttl the two come back."""
    old = lab.cluster.leader()
    names = (old.status() or {}).get("synchronous_standbys") or []
    standby = lab.cluster.node(names[0]) if names else next(n for n in lab.cluster.nodes if n is not old)
    f = Fault(old, time.monotonic())
    kill_node(old)
    kill_node(standby)
    survivor = next(n for n in lab.cluster.nodes if n not in (old, standby))
    promoted = new_primary(lab, old, ttl(lab) * 3)
    f.note = f"{survivor.name} promoted alone" if promoted is survivor else f"{survivor.name} not promoted alone"
    # In sync mode the survivor may lack acknowledged commits; a failover once the two are back is due.
    f.unwanted = int(lab.sync and promoted is survivor)
    heal_everything(lab)
    f.ended = time.monotonic()
    return f


def etcd_member_slow(lab: Lab, rec: Recorder) -> Fault:
    """The etcd leader SIGSTOPped 3 s in every 4 s for 2 ttl."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    member = (etcd_leader(lab) or 1) - 1
    end = f.began + 2 * ttl(lab)
    try:
        while time.monotonic() < end:
            lab.cluster.etcd.kill(member, signal.SIGSTOP)
            time.sleep(3)
            lab.cluster.etcd.kill(member, signal.SIGCONT)
            time.sleep(1)
    finally:
        lab.cluster.etcd.kill(member, signal.SIGCONT)
    f.ended = time.monotonic()
    return f


def etcd_minority_endpoint(lab: Lab, rec: Recorder) -> Fault:
    """The first etcd member (every agent's first endpoint) cut from the other two for ttl + 5 s:
    it serves only stale reads, and nothing may rest on them."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    first, *rest = [m.name for m in lab.cluster.etcd.members]
    for other in rest:
        lab.net.drop(first, other)
    time.sleep(ttl(lab) + 5)
    lab.net.heal()
    f.ended = time.monotonic()
    return f


def flapping(lab: Lab, rec: Recorder) -> Fault:
    """For 2 minutes: the primary cut from etcd and healed every 2-5 s, then 30 % of its packets
    (both ways) dropped at random."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    rng = random.Random(7)
    while time.monotonic() < f.began + 60:
        for member in lab.cluster.etcd.members:
            lab.net.drop(old.name, member.name)
        time.sleep(rng.uniform(2, 5))
        lab.net.heal()
        time.sleep(rng.uniform(2, 5))
    lab.net.lossy(old.name, 30)
    time.sleep(60)
    lab.net.heal()
    f.ended = time.monotonic()
    return f


def clock_file(n: Node) -> Path:
    return n.dir / "clockstep"


def clockstep_library() -> Path | None:
    """bench/clockstep.c built once (gcc), or None without a compiler."""
    out = Path(tempfile.gettempdir()) / f"pgha-clockstep-{int(CLOCKSTEP.stat().st_mtime)}.so"
    if not out.exists():
        built = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(CLOCKSTEP), "-ldl"],
                               capture_output=True, text=True, check=False) if shutil.which("gcc") else None
        if built is None or built.returncode != 0:
            return None
        out.chmod(0o755)
    return out


def with_clockstep(n: Node, library: Path) -> None:
    """Start ``n``'s agent with its wall clock under a file the scenario steps (monotonic clocks
    and Postgres untouched: the checker reads the server's clock)."""
    clock_file(n).write_text("0\n")
    n.env.update({"LD_PRELOAD": str(library), "CLOCKSTEP_FILE": str(clock_file(n))})


def clock_stepped(lab: Lab, rec: Recorder) -> Fault:
    """The primary's agent's wall clock stepped 2 h ahead, then a replica's 2 h back, each for
    ttl + 5 s. etcd's clock is not stepped: etcd is Go, which reads the clock without libc, and
    stepping the machine's clock would step every node and the checker's clock with it."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    if not clock_file(old).exists():
        f.note = "no clock step preloaded (bench/matrix.py builds bench/clockstep.c with gcc): not run"
        return f
    replica = next(n for n in lab.cluster.nodes if n is not old)
    for n, step in ((old, 7200), (replica, -7200)):
        clock_file(n).write_text(f"{step}\n")
        time.sleep(ttl(lab) + 5)
        clock_file(n).write_text("0\n")
    time.sleep(2)
    f.ended = time.monotonic()
    return f


def port_taken(lab: Lab, rec: Recorder) -> Fault:
    """The primary's Postgres killed and its port taken at once: it cannot start again."""
    old = lab.cluster.leader()
    assert old.place is not None
    # The squatter tries to bind every millisecond from before the kill: it wins the port against
    # an agent that restarts Postgres at once.
    code = ("import socket, time\nwhile True:\n    s = socket.socket()\n"
            "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    try:\n"
            f"        s.bind(('{old.host}', {old.pg_port}))\n        break\n"
            "    except OSError:\n        s.close()\n        time.sleep(0.001)\ns.listen()\ntime.sleep(3600)\n")
    squatter = subprocess.Popen(old.place.argv("python3", "-c", code))
    time.sleep(0.5)
    f = Fault(old, time.monotonic())
    old.kill_postgres(signal.SIGKILL, tree=True)
    try:
        if not writes_back(rec, time.monotonic() + 0.5, 300):
            f.note = "no writes within 300 s"
    finally:
        squatter.kill()
        squatter.wait()
    f.ended = time.monotonic()
    return f


def small_disk(n: Node, size: str = "2g") -> Callable[[], None]:
    """Mount a tmpfs of ``size`` on ``n``'s directory (its data directory, pg_wal and logs) before
    it starts; returns what unmounts it."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(n.dir)], check=True)

    def unmount() -> None:
        subprocess.run(["umount", "-l", str(n.dir)], check=False)
    return unmount


def disk_full(lab: Lab, rec: Recorder) -> Fault:
    """The primary's disk (its small tmpfs: pg_wal, data, logs) filled to the last byte until
    another node takes writes, then freed."""
    old = lab.cluster.leader()
    f = Fault(old, time.monotonic())
    if not old.dir.is_mount():
        f.note = "the node's directory is not a small tmpfs (bench/matrix.py mounts one): not run"
        return f
    filler = old.dir / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # unbuffered: the last write fails with ENOSPC, and nothing is left to flush
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, os.statvfs(old.dir).f_bavail * os.statvfs(old.dir).f_frsize)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    try:
        if not writes_back(rec, time.monotonic() + 1, 300):
            f.note = "no writes within 300 s"
    finally:
        filler.unlink()
    f.ended = time.monotonic()
    return f


def async_replica(lab: Lab, old: Node) -> Node:
    """A replica that is not the synchronous standby (in async mode, any)."""
    sync = set((old.status() or {}).get("synchronous_standbys") or [])
    return next(n for n in lab.cluster.nodes if n is not old and n.name not in sync)


def restarted_with(n: Node, change: Callable[[], None]) -> None:
    """Stop ``n`` (agent and Postgres), ``change`` its node file or data, start it again."""
    n.stop()
    change()
    n.start()


def broken_replication_password(lab: Lab, rec: Recorder) -> Fault:
    """A replica restarted with a wrong replication password (it runs, but streams nothing and
    falls behind), then the primary node killed: the other replica takes over, never this one."""
    old = lab.cluster.leader()
    broken = async_replica(lab, old)
    auth = broken.config["postgresql"]["authentication"]["replication"]
    right = auth["password"]
    restarted_with(broken, lambda: auth.update(password="not-the-password"))
    time.sleep(5)  # the primary writes on; the broken replica falls behind
    f = Fault(old, time.monotonic())
    streams = broken.health("/replica") == 200
    kill_node(old)
    if not writes_back(rec, time.monotonic() + 0.5, ttl(lab) * 3):
        f.note = "no writes within 3 ttl"
    promoted = broken.health("/primary") == 200
    f.unwanted = int(promoted)
    f.note = "; ".join(x for x in (f.note, f"{broken.name} streamed with a wrong password" if streams else "",
                                   f"{broken.name} (not streaming) promoted" if promoted else "") if x)
    restarted_with(broken, lambda: auth.update(password=right))
    heal_everything(lab)
    f.ended = time.monotonic()
    return f


def duplicate_name(lab: Lab, rec: Recorder) -> Fault:
    """A replica restarted from a copied node file: the primary's name, its own host and an empty
    data directory. It must stop without touching the primary's record; nothing changes hands."""
    old = lab.cluster.leader()
    impostor = async_replica(lab, old)
    data = Path(impostor.config["postgresql"]["data_dir"])
    aside = data.with_name(data.name + ".aside")
    own = impostor.config["name"]

    def impersonate() -> None:
        impostor.config["name"] = old.name
        data.rename(aside)

    def restore() -> None:
        impostor.config["name"] = own
        shutil.rmtree(data, ignore_errors=True)
        aside.rename(data)

    f = Fault(old, time.monotonic())
    restarted_with(impostor, impersonate)
    end = time.monotonic() + ttl(lab) * 2
    while time.monotonic() < end and impostor.agent_alive:
        time.sleep(0.2)
    f.note = "the impostor's agent ran on" if impostor.agent_alive else "the impostor's agent stopped"
    if (data / "PG_VERSION").exists():
        f.note += "; it made a data directory"
    restarted_with(impostor, restore)
    heal_everything(lab)
    f.ended = time.monotonic()
    return f


def mid_switchover(inject: str) -> Callable[[Lab, Recorder], Fault]:
    """A switchover to a replica (the synchronous standby in sync mode), and once the old primary
    stopped taking writes and before the candidate took over: ``inject``."""
    def run(lab: Lab, rec: Recorder) -> Fault:
        old = lab.cluster.leader()
        names = (old.status() or {}).get("synchronous_standbys") or []
        cand = lab.cluster.node(names[0]) if names else next(n for n in lab.cluster.nodes if n is not old)
        f = Fault(old, time.monotonic())
        asked = threading.Thread(target=lambda: http_request(
            "POST", old.api + "/switchover", {"leader": old.name, "candidate": cand.name}, timeout=60), daemon=True)
        asked.start()
        try:
            wait_for("the old primary stopped", lambda: old.health("/primary") != 200, 30, interval=0.01)
        except TimeoutError:
            f.note = "the switchover never began"
            return f
        if cand.health("/primary") == 200:
            f.note = "window missed: the candidate had taken over"
            # Killing it now kills the new primary: the failover that follows is the one asked for.
            f.caused = int(inject == "candidate killed")
        if inject == "candidate killed":
            kill_node(cand)
        elif inject == "old leader's agent killed":
            old.signal_agent(signal.SIGKILL)
        else:  # etcd frozen for half a ttl
            for i in range(len(lab.cluster.etcd.members)):
                lab.cluster.etcd.kill(i, signal.SIGSTOP)
            time.sleep(ttl(lab) / 2)
            for i in range(len(lab.cluster.etcd.members)):
                lab.cluster.etcd.kill(i, signal.SIGCONT)
        asked.join(60)
        if not writes_back(rec, time.monotonic() + 0.5, ttl(lab) * 3):
            f.note = (f.note + "; " if f.note else "") + "no writes within 3 ttl"
        heal_everything(lab)
        f.ended = time.monotonic()
        return f
    return run


CATALOGUE: list[Scenario] = [
    Scenario("primary node killed", primary_killed, (YES, YES),
             "agent, postmaster and backends SIGKILLed at once; back after writes resume"),
    Scenario("primary agent SIGSTOPped", wrapped(FAULTS["sigstop primary agent"]), (YES, YES),
             "the agent alone stopped for ttl + 3 s, Postgres left running"),
    Scenario("primary agent SIGKILLed", wrapped(FAULTS["sigkill primary agent"]), (YES, YES),
             "the agent alone killed, Postgres left running; restarted at the heal"),
    Scenario("primary cut from etcd and replicas", wrapped(FAULTS["primary cut from etcd and replicas"]), (YES, YES),
             "its packets to and from etcd and the replicas dropped (nftables) until another node takes writes"),
    Scenario("primary cut from etcd", wrapped(FAULTS["primary cut from etcd"]), (YES, YES),
             "its packets to and from etcd dropped; replication and clients still reach it"),
    Scenario("primary's packets to etcd dropped", wrapped(FAULTS["primary's packets to etcd dropped"]), (YES, YES),
             "one way: what it sends to etcd is dropped, what etcd sends arrives"),
    Scenario("primary link down", wrapped(FAULTS["primary link down"]), (YES, YES),
             "its interface down until another node takes writes"),
    Scenario("primary node frozen", wrapped(FAULTS["primary node frozen"]), (YES, YES),
             "the whole node (agent and Postgres) in the cgroup freezer for ttl + 3 s, then thawed"),
    Scenario("primary's Postgres hung", postgres_hung, (AT_MOST_ONE, AT_MOST_ONE),
             "postmaster and backends SIGSTOPped, the agent alive, until writes resume anywhere"),
    Scenario("primary's port taken after a crash", port_taken, (YES, YES),
             "Postgres SIGKILLed and its port bound by another process: it cannot start again"),
    Scenario("primary's disk full", disk_full, (YES, YES),
             "its tmpfs (data, pg_wal, logs) filled to the last byte until another node takes writes"),
    Scenario("primary and sync standby killed", primary_and_sync_standby_killed, (AT_MOST_ONE, YES),
             "both holders of the last commit killed for 3 ttl: an async survivor must not be promoted in sync mode"),
    Scenario("replica with a wrong replication password", broken_replication_password, (YES, YES),
             "a replica restarted with a wrong replication password, then the primary node killed"),
    Scenario("second agent with the primary's name", duplicate_name, (NO, NO),
             "a replica restarted from a copy of the primary's node file (its name), with no data, for 2 ttl"),
    Scenario("switchover: candidate killed", mid_switchover("candidate killed"), (AT_MOST_ONE, AT_MOST_ONE),
             "a switchover; the candidate node killed once the old primary stopped taking writes"),
    Scenario("switchover: old leader's agent killed", mid_switchover("old leader's agent killed"),
             (AT_MOST_ONE, AT_MOST_ONE), "a switchover; the old primary's agent killed in the same window"),
    Scenario("switchover: etcd frozen", mid_switchover("etcd frozen"), (AT_MOST_ONE, AT_MOST_ONE),
             "a switchover; every etcd member SIGSTOPped for ttl / 2 in the same window"),
    Scenario("etcd minority endpoint", etcd_minority_endpoint, (AT_MOST_ONE, AT_MOST_ONE),
             "the agents' first etcd member cut from the other two for ttl + 5 s"),
    Scenario("one etcd member slow", etcd_member_slow, (NO, NO),
             "the etcd leader SIGSTOPped 3 s in every 4 s for 2 ttl"),
    Scenario("wall clock stepped 2 h", clock_stepped, (NO, NO),
             "the primary's agent's wall clock 2 h ahead, then a replica's 2 h behind, ttl + 5 s each"),
    Scenario("flapping link then 30 % loss", flapping, (AT_MOST_ONE, AT_MOST_ONE),
             "the primary cut from etcd and healed every 2-5 s for 60 s, then 30 % of its packets lost for 60 s"),
]


def by_name(name: str) -> Scenario:
    with contextlib.suppress(StopIteration):
        return next(s for s in CATALOGUE if s.name == name)
    raise KeyError(f"no scenario {name!r}; the catalogue: {', '.join(s.name for s in CATALOGUE)}")
