"""A local pgha cluster of real processes: etcd, N agents each with its own Postgres, under one
base directory on free 127.0.0.1 ports; every process is killed by ``stop``."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgha.postgres import processes
from pgha.postgres.processes import running_postmaster
from pgha.testing.netlab import Host, NetLab
from pgha.testing.procs import (
    EtcdCluster,
    free_port,
    http_get,
    require_binary,
    wait_for,
)


@dataclass
class Node:
    name: str
    dir: Path
    pg_port: int
    api_port: int
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    nofile: int | None = None  # the agent's open-file limit (soft and hard), as an operator may set it
    host: str = "127.0.0.1"  # where its Postgres and REST API listen
    place: Host | None = None  # its namespace in the partition lab (None: the host's loopback)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "pgha"])  # how the agent runs

    @property
    def config_path(self) -> Path:
        return self.dir / f"{self.name}.yml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def dsn(self, dbname: str = "postgres") -> str:
        su = self.config["postgresql"]["authentication"]["superuser"]
        return (f"host={self.host} port={self.pg_port} user={su['username']} password={su['password']} "
                f"dbname={dbname} connect_timeout=2")

    def start(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))
        log = open(self.dir / "agent.log", "ab")  # noqa: SIM115
        limit, place = self.nofile, self.place

        def limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            if place is not None:
                place.join_cgroup()

        prefix = place.argv() if place is not None else []
        self.proc = subprocess.Popen([*prefix, *self.command, "agent", "-c", str(self.config_path)],
                                     stdout=log, stderr=log, start_new_session=True, env={**os.environ, **self.env},
                                     preexec_fn=limits)
        log.close()

    @property
    def agent_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_agent(self, sig: int) -> None:
        if self.agent_alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait_agent_exit(self, timeout: float = 30) -> None:
        if self.proc is not None:
            self.proc.wait(timeout)

    def postmaster_pid(self) -> int | None:
        return running_postmaster(self.data_dir)

    def kill_postgres(self, sig: int = signal.SIGKILL, tree: bool = False) -> None:
        """Signal the postmaster; ``tree``: its children too, at once (a node that dies whole:
        the postmaster alone leaves backends that may still run a statement for a moment)."""
        pid = self.postmaster_pid()
        if pid:
            children = processes.children(pid) if tree else []
            os.kill(pid, sig)
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, sig)

    def freeze_postgres(self) -> list[int]:
        """SIGSTOP the postmaster (it forks no more), then every child: the shape of a storage
        stall. Returns the pids, for ``thaw``."""
        pm = self.postmaster_pid()
        assert pm is not None, f"{self.name}: postgres is not running"
        os.kill(pm, signal.SIGSTOP)
        pids = [pm, *processes.children(pm)]
        for p in pids[1:]:
            os.kill(p, signal.SIGSTOP)
        return pids

    def status(self) -> dict[str, Any] | None:
        try:
            return http_get(self.api + "/status", 1.0)[1]
        except OSError:
            return None

    def health(self, path: str) -> int:
        try:
            return http_get(self.api + path, 1.0)[0]
        except OSError:
            return 0

    def log_text(self) -> str:
        try:
            return (self.dir / "agent.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with_cont(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        pid = self.postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGQUIT)
            wait_for("postmaster exit", lambda: self.postmaster_pid() is None, 20)
        fence = self.fence_pid()
        if fence:
            os.kill(fence, signal.SIGKILL)

    def fence_pid(self) -> int | None:
        """The pid of this node's fence process, if one runs."""
        try:
            pid = int(Path(f"{self.data_dir}.fence.pid").read_text())
            return pid if b"pgha/fence" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except (OSError, ValueError):
            return None


def thaw(pids: list[int]) -> None:
    for pid in pids:
        with_cont(pid)


def with_cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass


def node_config(scope: str, name: str, d: Path, pg_port: int, api_port: int, etcd_hosts: list[str],
                dcs: dict[str, Any], tags: dict[str, Any] | None = None, host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "scope": scope, "name": name,
        "etcd": {"hosts": etcd_hosts},
        "restapi": {"listen": f"{host}:{api_port}"},
        "postgresql": {
            "data_dir": str(d / "data"), "listen": f"{host}:{pg_port}",
            "bin_dir": "/usr/lib/postgresql/15/bin",
            "authentication": {"superuser": {"username": "postgres", "password": "supersecret"},
                               "replication": {"username": "replicator", "password": "replsecret"}},
            "parameters": {"shared_buffers": "32MB", "fsync": "off", "max_connections": 40,
                           "log_min_messages": "warning", "wal_keep_size": "64MB"},
        },
        "tags": tags or {},
        "bootstrap": {"dcs": dcs, "initdb": ["--encoding=UTF8", "--no-sync"]},
    }


FAST = {"ttl": 6, "loop_wait": 1, "retry_timeout": 2}


class LocalCluster:
    """etcd plus N pgha nodes under ``base``; every process is killed by ``stop``."""

    def __init__(self, base: Path, nodes: int = 3, etcd_members: int = 1, dcs: dict[str, Any] | None = None,
                 scope: str = "demo", tags: dict[str, dict[str, Any]] | None = None,
                 restapi: dict[str, dict[str, Any]] | None = None, lab: NetLab | None = None) -> None:
        """With ``lab``, each etcd member (e0.., at .21..) and each node (n1.., at .11..) runs in
        its own namespace of the partition lab, on the standard ports, and nodes are freezable."""
        require_binary("postgres", "/usr/lib/postgresql/15/bin/postgres")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        self.scope = scope
        self.lab = lab
        places = [lab.add_host(f"e{i}", 21 + i) for i in range(etcd_members)] if lab is not None else []
        self.etcd = EtcdCluster(base, etcd_members, [(h.addr, h.argv()) for h in places])
        self.dcs = dict(FAST if dcs is None else dcs)
        if lab is not None:  # clients and HAProxy connect from the bridge's address
            pg = self.dcs.setdefault("postgresql", {})
            pg.setdefault("pg_hba", [f"host all all {lab.subnet}.0/24 scram-sha-256",
                                     f"host replication all {lab.subnet}.0/24 scram-sha-256"])
        self.nodes: list[Node] = []
        for i in range(1, nodes + 1):
            name = f"n{i}"
            d = base / name
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o755)
            place = lab.add_host(name, 10 + i, freezable=True) if lab is not None else None
            host = place.addr if place is not None else "127.0.0.1"
            # distinct Postgres ports even in separate namespaces: unix sockets share /tmp
            pg_port, api_port = (5440 + i, 8008) if place is not None else (free_port(), free_port())
            cfg = node_config(scope, name, d, pg_port, api_port, self.etcd.hosts, self.dcs, (tags or {}).get(name), host)
            cfg["restapi"].update((restapi or {}).get(name, {}))
            self.nodes.append(Node(name, d, pg_port, api_port, cfg, host=host, place=place))

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, wait: bool = True) -> None:
        self.etcd.start()
        for n in self.nodes:
            n.config["etcd"]["hosts"] = self.etcd.hosts  # etcd may have had to move to other ports
            n.start()
        if wait:
            self.wait_healthy(90)

    def primaries(self) -> list[Node]:
        return [n for n in self.nodes if n.health("/primary") == 200]

    def leader(self, timeout: float = 30) -> Node:
        def only() -> Node | None:
            p = self.primaries()
            return p[0] if len(p) == 1 else None

        return wait_for("exactly one primary", only, timeout)

    def streaming_replicas(self) -> list[Node]:
        return [n for n in self.nodes if n.health("/replica") == 200]

    def wait_healthy(self, timeout: float = 60, replicas: int | None = None) -> Node:
        want = len(self.nodes) - 1 if replicas is None else replicas
        wait_for(f"one primary and {want} streaming replicas",
                 lambda: len(self.primaries()) == 1 and len(self.streaming_replicas()) >= want, timeout, 0.25)
        return self.leader()

    def stop(self) -> None:
        for n in self.nodes:
            try:
                n.stop()
            except Exception:  # noqa: BLE001 - keep cleaning up the rest
                pass
        self.etcd.stop()

    def dump_logs(self) -> str:
        out = []
        for n in self.nodes:
            pglog = n.dir / "data.postgres.log"
            pg = pglog.read_text(errors="replace")[-8000:] if pglog.exists() else ""
            out.append(f"===== {n.name} agent\n{n.log_text()[-6000:]}\n===== {n.name} postgres\n{pg}")
        return "\n".join(out)


