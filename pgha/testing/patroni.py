"""A real Patroni 4.1.5 cluster on loopback: for side-by-side benchmarks, for recording the
reference REST bodies that pgha's must match, and for migrating a running Patroni cluster to pgha.

Patroni is installed from PyPI into its own cached venv (``PATRONI_VENV``, default
/tmp/pgha-bench-patroni-venv). Its agents run as the ``postgres`` OS user (Postgres refuses root),
each with its own Postgres on free loopback ports, against an etcd of the caller's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pgha.testing.cluster import Node
from pgha.testing.procs import free_port, http_get, wait_for

VERSION = "4.1.5"
VENV = Path(os.environ.get("PATRONI_VENV", "/tmp/pgha-bench-patroni-venv"))


class PatroniUnavailable(RuntimeError):
    """Patroni cannot be installed here; tests that need it skip with this reason."""


def install() -> Path:
    """The patroni executable, installed once into ``VENV``."""
    exe = VENV / "bin" / "patroni"
    if exe.exists():
        return exe
    # Debian's interpreter: the agents run as ``postgres``, who cannot read a root-only pyenv.
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    steps = [[python, "-m", "venv", str(VENV)],
             [str(VENV / "bin" / "pip"), "install", "-q", f"patroni[etcd3,psycopg3]=={VERSION}"]]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PatroniUnavailable(f"could not install Patroni {VERSION} into {VENV}: {last[0]}")
    return exe


def patronictl() -> Path:
    return install().with_name("patronictl")


class PatroniCluster:
    def __init__(self, base: Path, etcd_hosts: list[str], dcs: dict[str, Any], nodes: int = 3,
                 scope: str = "patroni", namespace: str = "/service") -> None:
        self.exe = install()
        self.scope, self.namespace = scope, namespace
        self.base = base
        pw = pwd.getpwnam("postgres")
        base.mkdir(parents=True, exist_ok=True)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.nodes: list[dict[str, Any]] = []
        for i in range(1, nodes + 1):
            name, pg_port, api_port = f"p{i}", free_port(), free_port()
            cfg = {
                "scope": scope, "namespace": namespace, "name": name,
                "restapi": {"listen": f"127.0.0.1:{api_port}", "connect_address": f"127.0.0.1:{api_port}"},
                "etcd3": {"hosts": ",".join(etcd_hosts)},
                "bootstrap": {"dcs": {**dcs, "postgresql": {"use_pg_rewind": True, "use_slots": True}},
                              "initdb": [{"encoding": "UTF8"}]},
                "postgresql": {
                    "listen": f"127.0.0.1:{pg_port}", "connect_address": f"127.0.0.1:{pg_port}",
                    "data_dir": str(base / name / "data"), "bin_dir": "/usr/lib/postgresql/15/bin",
                    "pgpass": str(base / name / "pgpass"),
                    "authentication": {"superuser": {"username": "postgres", "password": "supersecret"},
                                       "replication": {"username": "replicator", "password": "replsecret"}},
                    "parameters": {"shared_buffers": "32MB", "fsync": "off", "max_connections": 40,
                                   "unix_socket_directories": "/tmp", "wal_keep_size": "64MB"},
                },
            }
            self.nodes.append({"name": name, "api": f"http://127.0.0.1:{api_port}", "config": cfg, "proc": None})

    def start(self) -> None:
        for n in self.nodes:
            d = self.base / n["name"]
            d.mkdir(exist_ok=True)
            os.chown(d, self.uid, self.gid)
            path = d / "patroni.yml"
            path.write_text(yaml.safe_dump(n["config"]))
            log = open(d / "patroni.log", "ab")  # noqa: SIM115
            n["proc"] = subprocess.Popen([str(self.exe), str(path)], stdout=log, stderr=log, user=self.uid,
                                         group=self.gid, cwd=str(d), start_new_session=True,
                                         env={"PATH": os.environ.get("PATH", ""), "HOME": str(d)})
            log.close()
        wait_for("a Patroni leader and two streaming replicas", self._healthy, 180, interval=0.5)

    def _healthy(self) -> bool:
        codes = [http_get(n["api"] + "/primary", timeout=1)[0] for n in self.nodes]
        replicas = [http_get(n["api"] + "/replica", timeout=1)[0] for n in self.nodes]
        return codes.count(200) == 1 and replicas.count(200) == len(self.nodes) - 1

    def pids(self) -> list[int]:
        return [n["proc"].pid for n in self.nodes if n["proc"] is not None]

    def config_path(self, name: str) -> Path:
        return self.base / name / "patroni.yml"

    def stop_agents(self) -> None:
        """Stop the Patroni agents only (under pause, their Postgres keeps running)."""
        for n in self.nodes:
            proc = n["proc"]
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)

    def stop(self) -> None:
        for n in self.nodes:
            proc = n["proc"]
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for n in self.nodes:
            proc = n["proc"]
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["pkill", "-KILL", "-f", f"postgres -D {self.base}"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


class PatroniNode(Node):
    """A Patroni 4.1.5 node in the shape of pgha's test ``Node``: the same name, ports, namespace
    and data directory, so the partition lab's faults, recorder and checker apply to both systems
    unchanged. ``config`` stays in pgha's form (Patroni's own, mostly) and is translated at start."""

    @classmethod
    def instead_of(cls, node: Node) -> PatroniNode:
        install()
        return cls(node.name, node.dir, node.pg_port, node.api_port, node.config, host=node.host, place=node.place,
                   env=dict(node.env))

    def patroni_config(self) -> dict[str, Any]:
        c = self.config
        pg, boot = dict(c["postgresql"]), dict(c["bootstrap"])
        pg.pop("callbacks", None)  # the lab's VIP example needs root; Patroni runs as postgres
        dcs = dict(boot["dcs"])
        if dcs.get("synchronous_mode") in ("on", True):
            dcs["synchronous_mode"] = True
        dcs["postgresql"] = {**dcs.get("postgresql", {}), "use_pg_rewind": True, "use_slots": True}
        return {
            "scope": c["scope"], "name": self.name, "namespace": "/service",
            "etcd3": {"hosts": ",".join(c["etcd"]["hosts"])},
            "restapi": {"listen": c["restapi"]["listen"], "connect_address": c["restapi"]["listen"]},
            "bootstrap": {"dcs": dcs, "initdb": [{"encoding": "UTF8"}, "no-sync"]},
            "postgresql": {**pg, "connect_address": pg["listen"], "pgpass": str(self.dir / "pgpass"),
                           # its own socket directory: a pgha lab beside it uses the same ports
                           "parameters": {**pg.get("parameters", {}), "unix_socket_directories": str(self.dir)}},
            "tags": c.get("tags") or {},
        }

    def start(self) -> None:
        pw = pwd.getpwnam("postgres")
        for d in (self.dir, self.dir / "home"):
            d.mkdir(exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        path = self.dir / "patroni.yml"
        path.write_text(yaml.safe_dump(self.patroni_config()))
        log = open(self.dir / "agent.log", "ab")  # noqa: SIM115
        place = self.place
        prefix = place.argv() if place is not None else []
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir / "home"), **self.env}
        # A preload (the matrix's clock step) starts after setpriv: only Patroni itself needs it.
        preload = [f"LD_PRELOAD={env.pop('LD_PRELOAD')}"] if "LD_PRELOAD" in env else []
        # setpriv and env exec: the pid the lab signals is Patroni's own, as an agent's is pgha's.
        argv = [*prefix, "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                "env", *preload, str(install()), str(path)]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env,
                                     preexec_fn=place.join_cgroup if place is not None else None)
        log.close()

    def health(self, path: str) -> int:
        """As pgha's: ``/replica`` only while it streams (Patroni's answers 200 for any running
        standby, and the lab must not start a scenario before the replicas caught up)."""
        code = super().health(path)
        if path != "/replica" or code != 200:
            return code
        try:
            streaming = (http_get(self.api + "/patroni", 1.0)[1] or {}).get("replication_state") == "streaming"
        except OSError:
            return 0
        return 200 if streaming else 503

    def status(self) -> dict[str, Any] | None:
        """pgha's /status fields the lab reads, from Patroni's /patroni and /cluster."""
        try:
            body = http_get(self.api + "/patroni", 1.0)[1] or {}
            members = (http_get(self.api + "/cluster", 1.0)[1] or {}).get("members", [])
        except OSError:
            return None
        sync = [m["name"] for m in members if m.get("role") == "sync_standby"]
        return {**body, "synchronous_standbys": sync, "note": None}
