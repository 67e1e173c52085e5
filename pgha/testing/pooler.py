"""A real PgBouncer (Debian's) and its ``pgha pooler`` watcher, as processes under one directory
on free 127.0.0.1 ports, for tests, benchmarks and ``./dev cluster``."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pgha.testing.procs import free_port, require_binary, wait_for

PGBOUNCER_TEMPLATE = """\
%include {databases_file}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {auth_file}
admin_users = {user}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
logfile = {logfile}
pidfile = {pidfile}
ignore_startup_parameters = extra_float_digits,options
; A failed login to a server (a primary that just went away) is retried after 1 s, not 15 s:
; during that window every new client of the pool gets an error at once.
server_login_retry = 1
; Clients queue while pgha pauses the pool across a role change; they give up after this.
query_wait_timeout = 60
server_connect_timeout = 3
"""


class PgBouncer:
    """PgBouncer in transaction pooling mode; ``user``/``password`` log in clients, the admin
    console and the servers alike. The [databases] file starts empty: the watcher writes it."""

    def __init__(self, base: Path, user: str, password: str, os_user: str = "postgres") -> None:
        self.binary = require_binary("pgbouncer")
        self.dir = base
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user, self.password, self.os_user = user, password, os_user
        self.databases_file = self.dir / "databases.ini"
        self.config_path = self.dir / "pgbouncer.ini"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.user} password={self.password}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={self.user} password={self.password} connect_timeout=5"

    def write_config(self) -> None:
        auth = self.dir / "userlist.txt"
        auth.write_text(f'"{self.user}" "{self.password}"\n')
        if not self.databases_file.exists():
            self.databases_file.write_text("[databases]\n")
        self.config_path.write_text(PGBOUNCER_TEMPLATE.format(
            databases_file=self.databases_file, port=self.port, auth_file=auth, user=self.user,
            logfile=self.dir / "pgbouncer.log", pidfile=self.dir / "pgbouncer.pid"))
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            pw = pwd.getpwnam(self.os_user)
            for p in (self.dir, auth, self.config_path, self.databases_file):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        self.write_config()
        argv = [self.binary, str(self.config_path)]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", self.os_user]
        out = open(self.dir / "pgbouncer.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        out.close()
        wait_for("pgbouncer listening", lambda: _listening(self.port) or None, 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PoolerWatcher:
    """``pgha pooler -c <dir>/pooler.yml`` as a process (its supervisor and controller)."""

    def __init__(self, base: Path, config: dict[str, Any]) -> None:
        self.dir = base
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.config_path = self.dir / "pooler.yml"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))
        log = open(self.dir / "pooler.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "pgha", "pooler", "-c", str(self.config_path)],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()

    def controller_pid(self) -> int | None:
        """The controller process under the supervisor (None: none running)."""
        if self.proc is None:
            return None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else None

    def log_text(self) -> str:
        path = self.dir / "pooler.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Pooled:
    """A PgBouncer and its watcher following ``cluster`` (a LocalCluster), under ``base``."""

    def __init__(self, cluster: Any, base: Path, name: str = "bouncer1", max_pause: float = 30.0,
                 haproxy_socket: str | None = None) -> None:
        su = cluster.nodes[0].config["postgresql"]["authentication"]["superuser"]
        self.bouncer = PgBouncer(base / name, su["username"], su["password"])
        cfg: dict[str, Any] = {
            "scope": cluster.scope, "name": name, "etcd": {"hosts": cluster.etcd.hosts},
            "max_pause": max_pause, "lease_ttl": 4,
            "pgbouncer": {"admin": self.bouncer.admin_dsn, "databases_file": str(self.bouncer.databases_file)},
        }
        if haproxy_socket is not None:
            cfg["haproxy"] = {"socket": haproxy_socket}
        self.watcher = PoolerWatcher(base / name, cfg)

    def start(self, primary_port: int | None = None) -> None:
        self.bouncer.start()
        self.watcher.start()
        if primary_port is not None:
            wait_for("pooler pointed at the primary",
                     lambda: f"port={primary_port}" in self.bouncer.databases_file.read_text() or None, 20)
            # the file is written before PgBouncer reloads it: until then it knows no database
            wait_for("PgBouncer serving the database", lambda: self._serves(primary_port), 20)

    def _serves(self, port: int) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
                row = conn.execute("SELECT inet_server_port()").fetchone()
        except psycopg.Error:
            return False
        return row is not None and row[0] == port

    def stop(self) -> None:
        self.watcher.stop()
        self.bouncer.stop()
