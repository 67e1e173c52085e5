"""An old primary demoted while running rejoins without a rewind when every byte of its WAL
reached the node that promoted (Patroni's check, which Postgres itself confirms by accepting the
new timeline). Each node reaches etcd through its own loopback forwarder, so one node alone can be
cut from etcd and healed. The other side, an old primary that wrote past the fork and is rewound,
needs the replicas cut from it too (on loopback a replica fetches the demoted node's last WAL
from it, as a cascading standby): the partition lab's cut from etcd and replicas checks it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import pytest

from pgha.testing import FAST, LocalCluster, Node, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow


class EtcdLink:
    """A TCP forwarder on 127.0.0.1 to one etcd member; ``cut`` refuses new connections and
    resets the open ones, ``heal`` listens again on the same port."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.heal()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def heal(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        self.port = s.getsockname()[1]
        s.listen(64)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        assert self.listener is not None
        # shutdown, not close alone: it wakes the threads blocked in accept and recv on them
        for s in [self.listener, *self.conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.listener.close()
        with self.lock:
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            # Blocking from here on: a timeout on an idle watch closed the upstream half alone (a
            # close does not wake the thread blocked on the client half), and the watch went silent.
            upstream.settimeout(None)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the other pump, and the peer sees the close
            s.close()


def start_behind_links(c: LocalCluster) -> dict[str, EtcdLink]:
    c.etcd.start()
    links = {n.name: EtcdLink(c.etcd.hosts[0]) for n in c.nodes}
    for n in c.nodes:
        n.config["etcd"]["hosts"] = [links[n.name].address]
        n.start()
    c.wait_healthy(90)
    return links


def cut_until_replaced(c: LocalCluster, links: dict[str, EtcdLink], old: Node, kill: bool = False) -> Node:
    """``kill``: its Postgres dies too, right after the cut (the agent, without etcd, leaves it down)."""
    logged = len(old.log_text())
    links[old.name].cut()
    if kill:
        old.kill_postgres(tree=True)
    new = wait_for("another node promoted", lambda: next((n for n in c.nodes if n is not old
                                                        and n.health("/primary") == 200), None), 60)
    assert old.health("/primary") != 200
    links[old.name].heal()
    wait_for(f"{old.name} streaming from {new.name}", lambda: old.health("/replica") == 200, 60)
    log = old.log_text()[logged:]
    if kill:
        assert "demoting" not in log and f"starting as a replica of {new.name}" in log, log[-3000:]
    else:
        assert "demoting" in log, "the old primary was meant to demote while running"
    return new


@pytest.mark.parametrize("kill", [False, True], ids=["demoted_running", "postgres_died_too"])
def test_old_primary_cut_from_etcd_rejoins_without_a_rewind_when_its_wal_all_reached_the_new_primary(
        make_cluster: Callable[..., LocalCluster], kill: bool) -> None:
    # no heartbeat: nothing is written on the old primary in the cut, so the replica holds it all.
    # ``kill``: a stopped directory does not show where its WAL ends; it starts as the new leader's
    # replica first (crash recovery replays all of it) and the running rule decides, as Patroni does
    c = make_cluster(nodes=2, dcs={**FAST, "heartbeat_interval": 0})
    links = start_behind_links(c)
    old = c.leader()
    sql(old.dsn(), "CREATE TABLE feed (id int PRIMARY KEY); INSERT INTO feed VALUES (1)")
    # Replication is asynchronous: a Postgres killed right after the commit may not have sent it
    # (CI saw the rewind discard exactly this transaction). The scenario is WAL that all arrived.
    replica = next(n for n in c.nodes if n is not old)
    wait_for("the write on the replica", lambda: sql(replica.dsn(), "SELECT count(*) FROM feed")[0][0] == 1, 30)
    logged = len(old.log_text())
    new = cut_until_replaced(c, links, old, kill)
    log = old.log_text()[logged:]
    assert "rejoined without a rewind" in log and "rewinding from" not in log, log[-3000:]
    # its slot for the other node, made as primary, would hold its WAL for ever as a replica
    wait_for("the old primary's member slot dropped",
             lambda: sql(old.dsn(), "SELECT count(*) FROM pg_replication_slots")[0][0] == 0, 20)
    sql(new.dsn(), "INSERT INTO feed VALUES (2)")
    wait_for("the new primary's write on the old one", lambda: sql(old.dsn(), "SELECT count(*) FROM feed")[0][0] == 2, 30)
