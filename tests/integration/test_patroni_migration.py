"""Live migration of a running Patroni 4.1.5 cluster to pgha, as the README describes it, under
continuous writes: pause Patroni, stop its agents (Postgres keeps running), start pgha agents on
the same data directories from the unmodified Patroni configs, resume. No Postgres restart, no
failover, no timeline change, no write lost, and no write gap of a second."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgha.testing import EtcdCluster, Node, http_request, wait_for
from pgha.testing.patroni import PatroniCluster, PatroniUnavailable, install, patronictl

pytestmark = pytest.mark.slow


class Writer:
    """Commits unique ids to whichever node is writable, and records when each commit returned."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.acked, self.stop = dsn, [], threading.Event()
        self.times: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn, i = None, 0
        while not self.stop.is_set():
            try:
                conn = conn or psycopg.connect(self.dsn, autocommit=True)
                conn.execute("INSERT INTO migrated VALUES (%s)", (i + 1,))
                i += 1
                self.acked.append(i)
                self.times.append(time.monotonic())
                time.sleep(0.005)
            except psycopg.Error:
                conn = None
                time.sleep(0.02)

    def largest_gap(self) -> float:
        return max((b - a for a, b in zip(self.times, self.times[1:])), default=0.0)


@pytest.fixture(params=["async", "sync", "quorum"])
def patroni_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[PatroniCluster, EtcdCluster, str]]:
    try:
        install()
    except PatroniUnavailable as exc:
        pytest.skip(str(exc))
    base = Path(tempfile.mkdtemp(prefix="pgha-test-migration-"))
    base.chmod(0o755)
    (base / "etcd").mkdir()
    etcd = EtcdCluster(base / "etcd", 1)
    etcd.start()
    dcs: dict[str, object] = {"ttl": 10, "loop_wait": 1, "retry_timeout": 3}
    if request.param != "async":
        dcs["synchronous_mode"] = True if request.param == "sync" else "quorum"
    cluster = PatroniCluster(base / "patroni", etcd.hosts, dcs, scope="batman")
    try:
        cluster.start()
        yield cluster, etcd, str(request.param)
    finally:
        cluster.stop()
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)


def facts(cluster: PatroniCluster) -> dict[str, tuple[int, int]]:
    """Per node: postmaster PID and timeline."""
    out = {}
    for n in cluster.nodes:
        data = Path(n["config"]["postgresql"]["data_dir"])
        pid = int((data / "postmaster.pid").read_text().split()[0])
        port = n["config"]["postgresql"]["listen"].rsplit(":", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres") as c:
            row = c.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        out[n["name"]] = (pid, row[0] if row else 0)
    return out


def test_running_patroni_cluster_migrates_to_pgha_without_restart_failover_or_lost_write(
        patroni_cluster: tuple[PatroniCluster, EtcdCluster, str]) -> None:
    cluster, _, mode = patroni_cluster
    ports = [n["config"]["postgresql"]["listen"].rsplit(":", 1)[1] for n in cluster.nodes]
    dsn = (f"host={','.join('127.0.0.1' for _ in ports)} port={','.join(ports)} user=postgres password=supersecret "
           "dbname=postgres target_session_attrs=read-write connect_timeout=2")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE migrated (id int PRIMARY KEY)")
    before = facts(cluster)
    leader = next(n["name"] for n in cluster.nodes if http_request("GET", n["api"] + "/primary")[0] == 200)
    writer = Writer(dsn)
    writer.thread.start()
    nodes: list[Node] = []
    try:
        time.sleep(1)
        ctl = [str(patronictl()), "-c", str(cluster.config_path(leader))]
        subprocess.run([*ctl, "pause", "--wait"], check=True, capture_output=True, timeout=60)
        cluster.stop_agents()
        for n in cluster.nodes:  # the same files, the same ports, the same data directories
            pg_port = int(n["config"]["postgresql"]["listen"].rsplit(":", 1)[1])
            api_port = int(n["config"]["restapi"]["listen"].rsplit(":", 1)[1])
            node = Node(n["name"], cluster.base / n["name"], pg_port, api_port, n["config"])
            nodes.append(node)
            node.start()
        by_name = {n.name: n for n in nodes}
        wait_for(f"pgha's {leader} holding the leader key", lambda: by_name[leader].health("/primary") == 200, 60)
        wait_for("both replicas streaming under pgha", lambda: all(
            n.health("/replica") == 200 for n in nodes if n.name != leader), 60)
        assert http_request("GET", by_name[leader].api + "/patroni")[1]["pause"] is True
        code, body, _ = http_request("PATCH", by_name[leader].api + "/config", {"pause": False})
        assert code == 200, body
        wait_for("pgha resumed", lambda: http_request("GET", by_name[leader].api + "/patroni")[1].get("pause")
                 is False, 20)
        time.sleep(3)
        assert facts(cluster) == before, "a Postgres restarted or a timeline changed under pgha"
        if mode != "async":  # pgha read Patroni's sync key and keeps a synchronous standby
            standbys = http_request("GET", by_name[leader].api + "/patroni")[1].get("synchronous_standbys")
            assert standbys and standbys[0] != leader, standbys
        migrated = len(writer.acked)

        # and back: pause pgha, stop its agents (Postgres keeps running), start Patroni's, resume
        code, body, _ = http_request("PATCH", by_name[leader].api + "/config", {"pause": True})
        assert code == 200, body
        wait_for("pgha paused everywhere", lambda: all(
            http_request("GET", n.api + "/patroni")[1].get("pause") is True for n in nodes), 20)
        for n in nodes:
            assert n.proc is not None
            n.proc.terminate()
            n.proc.wait(30)
        assert facts(cluster) == before, "stopping pgha's agents in maintenance mode stopped a Postgres"
        cluster.start()
        subprocess.run([*ctl, "resume", "--wait"], check=True, capture_output=True, timeout=60)
        time.sleep(3)
        if mode != "async":  # and Patroni reads the key pgha left
            path, count = ("/sync", 1) if mode == "sync" else ("/quorum", 2)
            wait_for(f"Patroni's {path} answering 200 on {count} node(s)", lambda: [
                http_request("GET", n["api"] + path)[0] for n in cluster.nodes].count(200) == count, 10)
    except BaseException:
        for n in nodes:
            print(f"===== {n.name}\n{n.log_text()[-4000:]}")
        for p in cluster.nodes:
            print(f"===== patroni {p['name']}\n" + (cluster.base / p["name"] / "patroni.log").read_text()[-3000:])
        raise
    finally:
        writer.stop.set()
        writer.thread.join(10)
    try:
        after = facts(cluster)
        assert after == before, "a Postgres restarted or a timeline changed"
        with psycopg.connect(dsn, autocommit=True) as conn:
            stored = {r[0] for r in conn.execute("SELECT id FROM migrated").fetchall()}
        lost = [i for i in writer.acked if i not in stored]
        assert migrated > 500 and len(writer.acked) > migrated and lost == [], f"{len(lost)} acknowledged writes lost"
        gap = writer.largest_gap()
        print(f"migrated {leader} and its replicas: {len(writer.acked)} writes, largest gap {gap:.3f} s")
        if "PGHA_SHOW_LOGS" in __import__("os").environ:
            for n in nodes:
                print(f"===== {n.name}\n{n.log_text()[-3000:]}")
        assert gap < 1.0, f"writes stopped for {gap:.2f} s"
    finally:
        for n in nodes:
            n.stop()
