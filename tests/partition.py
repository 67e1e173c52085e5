"""The partition lab in use: a lab per mode (3 etcd members and 3 nodes in network namespaces,
HAProxy and the clients in the host namespace), a recorder of writes through HAProxy and straight
to every node, and the faults the scenarios and ``bench/fence.py`` inject."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgha.testing import FAST, HAProxy, LocalCluster, Node, http_request, wait_for
from pgha.testing.netlab import NetLab
from pgha.testing.patroni import PatroniNode
from tests.history import ROWS, Client, Op, Reader, Report, Stale, check

TTL = float(FAST["ttl"])
VIP_SCRIPT = Path(__file__).parents[1] / "configs" / "callbacks" / "vip.sh"


def vip_of(net: NetLab) -> str:
    return f"{net.subnet}.100"
_RECORDERS = itertools.count(1)  # client numbers stay unique across recorders (ids fit in int4)


@dataclass
class Lab:
    net: NetLab
    cluster: LocalCluster
    proxy: HAProxy
    mode: str  # sync (strict synchronous replication) | async

    @property
    def sync(self) -> bool:
        return self.mode == "sync"


@contextmanager
def open_lab(mode: str, tag: str, timing: dict[str, float] | None = None, system: str = "pgha",
             subnet: str | None = None, prepare: Callable[[LocalCluster], None] | None = None) -> Iterator[Lab]:
    """A lab in ``mode`` (sync: strict synchronous replication; async), removed on exit;
    ``timing`` overrides ttl, loop_wait and retry_timeout (default ``FAST``); ``system``: pgha,
    or patroni (Patroni 4.1.5 nodes in the same places, for ``bench/matrix.py``); ``prepare``
    sees the cluster before it starts (the matrix sets its nodes' environment there)."""
    net = NetLab(tag, subnet=subnet or ("10.77.0" if mode == "sync" else "10.77.1"))
    base = Path(tempfile.mkdtemp(prefix="pgha-lab-"))
    cluster: LocalCluster | None = None
    proxy: HAProxy | None = None
    try:
        net.create()
        sync = {"synchronous_mode": "on", "synchronous_mode_strict": True} if mode == "sync" else {}
        cluster = LocalCluster(base, nodes=3, etcd_members=3, lab=net, dcs={**FAST, **(timing or {}), **sync})
        for n in cluster.nodes:
            # A silently cut synchronous standby holds commits until its walsender times out
            # (60 s by default); strict-mode deployments shorten it, and so does the lab.
            n.config["postgresql"]["parameters"]["wal_sender_timeout"] = "5s"
            # The matrix's nodes have 2 GiB disks, and the checker's rows grow with every append: a
            # long scenario (the flapping link, 250 s) filled the replicas' disks with max_wal_size's
            # 1 GB of WAL beside the table's dead versions, and they stopped streaming.
            n.config["postgresql"]["parameters"]["max_wal_size"] = "256MB"
            # The virtual IP example follows the primary in every scenario (test_vip_follows_...).
            vip = f"{VIP_SCRIPT} {vip_of(net)}/24 eth0"
            n.config["postgresql"]["callbacks"] = {k: vip for k in ("on_start", "on_stop", "on_restart",
                                                                    "on_role_change")}
            # The kernel rejects clients of a primary past its fence's deadline, frozen or not.
            n.config["fence"] = {"port_gate": "required"}
        if system == "patroni":
            cluster.nodes = [PatroniNode.instead_of(n) for n in cluster.nodes]
        if prepare is not None:
            prepare(cluster)
        cluster.start()
        proxy = HAProxy(base, cluster.nodes)
        proxy.start()
        # Patroni answers /primary a moment before its fresh primary accepts connections.
        with wait_for("the primary accepting connections", lambda: psycopg.connect(
                cluster.leader().dsn(), autocommit=True), 30) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS reg (k int PRIMARY KEY, v int[] NOT NULL DEFAULT '{}')")
            conn.execute("INSERT INTO reg (k) SELECT g FROM generate_series(0, %s) g ON CONFLICT DO NOTHING",
                         (ROWS - 1,))
        yield Lab(net, cluster, proxy, mode)
    finally:
        if proxy is not None:
            proxy.stop()
        if cluster is not None:
            cluster.stop()
        net.destroy()
        keep = os.environ.get("KEEP_LAB_LOGS")
        if keep:  # a flake's whole story, not the teardown's last lines
            shutil.copytree(base, Path(keep) / base.name, ignore=shutil.ignore_patterns("data", "etcd[0-9]*", "*.sock", "sock"),
                            dirs_exist_ok=True)
        shutil.rmtree(base, ignore_errors=True)


def heal_everything(lab: Lab) -> None:
    lab.net.heal()
    for host in lab.net.hosts.values():
        if host.cgroup is not None:
            lab.net.freeze(host.name, False)
    for n in lab.cluster.nodes:
        n.signal_agent(signal.SIGCONT)
        if not n.agent_alive:
            n.start()
    for m in lab.cluster.etcd.members:
        if m.proc is None or m.proc.poll() is not None:
            lab.cluster.etcd.start_member(m)


def settle(lab: Lab) -> Node:
    heal_everything(lab)
    wait_for("every etcd member healthy under one leader", lambda: etcd_leader(lab) and all(
        healthy_member(m.client_url) for m in lab.cluster.etcd.members), 60)
    try:
        leader = lab.cluster.wait_healthy(120)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; the nodes: {describe(lab)}") from exc
    if lab.cluster.dcs.get("synchronous_mode"):
        wait_for("a synchronous standby recorded", lambda: (lab.cluster.leader(30).status() or {}).get(
            "synchronous_standbys"), 60)
    return leader


def describe(lab: Lab) -> str:
    """Each node as its API and its last log lines tell it: what a CI failure line must carry
    when the lab does not heal (the captured logs come truncated)."""
    out = []
    for n in lab.cluster.nodes:
        st = n.status() or {}
        tail = " | ".join(line.split("] ", 1)[-1] for line in n.log_text().splitlines()[-4:])
        out.append(f"{n.name}: /primary {n.health('/primary')}, /replica {n.health('/replica')}, "
                   f"role {st.get('role')}, state {st.get('state')}, timeline {st.get('timeline')}, "
                   f"note {st.get('note')!r}; log: {tail}")
    return "\n".join(out)


class Recorder:
    """Two clients through HAProxy and one straight to each node, appending unique ids; with
    ``reader``, one more reading them back through HAProxy's read port."""

    def __init__(self, lab: Lab, reader: bool = False) -> None:
        self.lab, self.lock, self.stop = lab, threading.Lock(), threading.Event()
        self.ops: list[Op] = []
        base = next(_RECORDERS) * 20
        self.workers = [Client(base + i, lab.proxy.write_port, self.stop, self.ops, self.lock) for i in (1, 2)]
        self.workers += [Client(base + 10 + i, n.pg_port, self.stop, self.ops, self.lock, host=n.host)
                         for i, n in enumerate(lab.cluster.nodes)]
        self.reader = Reader(lab.proxy.read_port, self.stop, self.ops, self.lock) if reader else None

    def stale_reads(self, lost: list[int]) -> list[Stale]:
        """Stale reads of writes that survived (a lost write is missing everywhere, rightly)."""
        gone = set(lost)
        return [s for s in (self.reader.stale if self.reader else []) if s.op not in gone]

    def __enter__(self) -> Recorder:
        for w in [*self.workers, *([self.reader] if self.reader else [])]:
            w.start()
        wait_for("writes acknowledged", lambda: self.acked() > 20, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for w in [*self.workers, *([self.reader] if self.reader else [])]:
            w.join(15)

    def acked(self, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for o in self.ops if o.outcome == "ok" and o.at >= since)

    def timelines(self) -> set[int]:
        with self.lock:
            return {o.timeline for o in self.ops if o.outcome == "ok"}

    def report(self, fault: str) -> Report:
        self.__exit__()
        leader = settle(self.lab)
        with psycopg.connect(leader.dsn(), autocommit=True) as conn:
            final = {k: tuple(v) for k, v in conn.execute("SELECT k, v FROM reg").fetchall()}
        report = check(list(self.ops), final, [fault])
        print(f"{self.lab.mode}: {fault}: {report.summary()}")
        return report


def healthy_member(url: str) -> bool:
    try:
        return http_request("GET", url + "/health", timeout=2)[0] == 200
    except OSError:
        return False


def etcd_leader(lab: Lab) -> int | None:
    """1 + the index of the etcd member that leads now."""
    for i, m in enumerate(lab.cluster.etcd.members):
        try:
            status, body, _ = http_request("POST", m.client_url + "/v3/maintenance/status", {}, timeout=2)
        except OSError:
            continue
        if status == 200 and isinstance(body, dict) and body.get("leader") == body.get("header", {}).get("member_id"):
            return i + 1
    return None



# -- faults, each injected and healed (the tests add their own checks) ---------------------------

def cut_primary(lab: Lab, rec: Recorder, cut: str) -> Node:
    """Silently drop the primary's packets: to etcd and the replicas, to etcd only, or only its
    own packets to etcd (one way). Healed once another node took writes."""
    old = lab.cluster.leader()
    peers = [m.name for m in lab.cluster.etcd.members]
    if cut == "etcd_and_replicas":
        peers += [n.name for n in lab.cluster.nodes if n is not old]
    t0 = time.monotonic()
    for peer in peers:
        lab.net.drop(old.name, peer, both=cut != "one_way_to_etcd")
    writes_resumed(rec, t0 + float(lab.cluster.dcs["ttl"]))
    wait_for("a new primary", lambda: [n for n in lab.cluster.primaries() if n is not old], 30)
    lab.net.heal()
    return old


def stop_agent(lab: Lab, rec: Recorder, sig: int) -> Node:
    """SIGSTOP (continued later) or SIGKILL (not restarted here) of the primary's agent alone."""
    old = lab.cluster.leader()
    old.signal_agent(sig)
    t0 = time.monotonic()
    time.sleep(float(lab.cluster.dcs["ttl"]) + 3)
    writes_resumed(rec, t0)
    old.signal_agent(signal.SIGCONT)
    return old


def link_down(lab: Lab, rec: Recorder) -> Node:
    old = lab.cluster.leader()
    t0 = time.monotonic()
    lab.net.link(old.name, False)
    writes_resumed(rec, t0 + 1)
    lab.net.link(old.name, True)
    return old


def freeze_node(lab: Lab, rec: Recorder) -> Node:
    old = lab.cluster.leader()
    t0 = time.monotonic()
    lab.net.freeze(old.name, True)
    time.sleep(float(lab.cluster.dcs["ttl"]) + 3)
    writes_resumed(rec, t0)
    lab.net.freeze(old.name, False)
    return old


def writes_resumed(rec: Recorder, after: float) -> None:
    wait_for("writes acknowledged again", lambda: rec.acked(after) > 20, 60)


FAULTS: dict[str, Callable[[Lab, Recorder], Node]] = {
    "sigstop primary agent": lambda lab, rec: stop_agent(lab, rec, signal.SIGSTOP),
    "sigkill primary agent": lambda lab, rec: stop_agent(lab, rec, signal.SIGKILL),
    "primary cut from etcd and replicas": lambda lab, rec: cut_primary(lab, rec, "etcd_and_replicas"),
    "primary cut from etcd": lambda lab, rec: cut_primary(lab, rec, "etcd_only"),
    "primary's packets to etcd dropped": lambda lab, rec: cut_primary(lab, rec, "one_way_to_etcd"),
    "primary link down": link_down,
    "primary node frozen": freeze_node,
}
