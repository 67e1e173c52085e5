"""Real processes on loopback for tests and the live local cluster: etcd members, HAProxy, and
helpers to find free ports, wait and speak HTTP. Not needed by a running agent."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

INSTALL_HINT = "apt-get install -y postgresql-15 etcd-server haproxy"


def require_binary(name: str, path: str | None = None) -> str:
    found = path if path and Path(path).exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed; install it with: {INSTALL_HINT}")
    return found


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


class _PortSlice:
    """Ports on 127.0.0.1 below the ephemeral range (outgoing connections, which churn in these
    tests, take their local ports from that range and would collide with a listener there), handed
    out in turn from this process's slice: a port is chosen long before its process binds it, so a
    port that is merely free now could be handed out twice. Each pytest-xdist worker has a slice
    of its own."""

    FLOOR = 15000

    def __init__(self) -> None:
        lo, _ = _ephemeral_range()
        top = max(self.FLOOR + 1000, lo)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        span = (top - self.FLOOR) // count
        self.lo = self.FLOOR + span * (int(worker) % count if worker.isdigit() else 0)
        self.span = span
        self.next = random.randrange(self.lo, self.lo + span)

    def take(self) -> int:
        for _ in range(self.span):
            port = self.next
            self.next = self.lo + (port + 1 - self.lo) % self.span
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {self.lo}..{self.lo + self.span - 1}")


_PORTS = _PortSlice()


def free_port() -> int:
    """A free port on 127.0.0.1 that this process has not handed out lately (see _PortSlice)."""
    return _PORTS.take()


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    argv: Sequence[str] = ()  # a prefix, e.g. ``ip netns exec <ns>`` in the partition lab

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


class EtcdCluster:
    def __init__(self, base: Path, size: int = 1, places: Sequence[tuple[str, Sequence[str]]] = ()) -> None:
        """``places``: (address, argv prefix) per member, to run each in its own namespace on
        fixed ports; by default every member runs on 127.0.0.1 on free ports."""
        self.base = base
        self.binary = require_binary("etcd")
        if places:
            self.members = [EtcdMember(f"e{i}", 2379, 2380, base / f"etcd{i}", host=addr, argv=tuple(argv))
                            for i, (addr, argv) in enumerate(places)]
        else:
            self.members = [EtcdMember(f"e{i}", free_port(), free_port(), base / f"etcd{i}") for i in range(size)]

    @property
    def hosts(self) -> list[str]:
        return [f"{m.host}:{m.client_port}" for m in self.members]

    def _initial(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start_member(self, m: EtcdMember) -> None:
        m.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"{m.name}.log", "ab")  # noqa: SIM115
        m.proc = subprocess.Popen(
            [*m.argv, self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
             "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
             "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
             "--initial-cluster", self._initial(), "--initial-cluster-state", "new",
             "--heartbeat-interval", "50", "--election-timeout", "500",
             # as the README recommends for etcd 3.4: a member rejoining after a partition does
             # not force an election (3.5 has it on by default)
             "--pre-vote"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()

    def start(self, attempts: int = 3) -> None:
        """Start the members and wait until each answers. For a new cluster, a port picked as free
        can be taken by another process before etcd binds it: then every member gets fresh ports
        and data directories and the start is tried again. A restart keeps ports and data."""
        fresh = not any(m.data_dir.exists() for m in self.members)
        for attempt in range(attempts if fresh else 1):
            for m in self.members:
                self.start_member(m)
            problem = self._wait_up(30)
            if problem is None:
                return
            self.stop()
            if attempt == (attempts if fresh else 1) - 1:
                tail = "".join((self.base / f"{m.name}.log").read_text(errors="replace")[-1500:] for m in self.members)
                raise RuntimeError(f"etcd did not start: {problem}\n{tail}")
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
                m.client_port, m.peer_port = free_port(), free_port()

    def _wait_up(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    return f"etcd {m.name} exited with {m.proc.returncode}"
            if all(_http_ok(m.client_url + "/health") for m in self.members):
                return None
            time.sleep(0.1)
        return f"not healthy within {timeout:.0f}s"

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        p = self.members[i].proc
        if p and p.poll() is None:
            p.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                p.wait()

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.kill(i)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any] | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, None


def http_request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 90.0, raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; returns (status, decoded JSON or text, headers), never raises on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, payload, hdrs = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        status, payload, hdrs = exc.code, exc.read(), dict(exc.headers)
    try:
        return status, json.loads(payload or b"null"), hdrs
    except ValueError:
        return status, payload.decode(errors="replace"), hdrs


class Server(Protocol):
    """A node HAProxy routes to: Postgres on ``pg_port``, health checks on ``api_port``."""

    name: str
    pg_port: int
    api_port: int


HAPROXY_TEMPLATE = """global
    maxconn 200
    stats socket {socket} mode 600 level admin
defaults
    mode tcp
    retries 3
    option redispatch
    # HAProxy waits min(1 s, timeout connect) between connection retries; on loopback 250 ms is ample
    timeout connect 250ms
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen primary
    bind 127.0.0.1:{write_port}
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server {checks} on-marked-down shutdown-sessions
{primary_servers}
listen replicas
    bind 127.0.0.1:{read_port}
    balance roundrobin
    option httpchk OPTIONS /replica
    http-check expect status 200
    # fall 3: a switchover re-points every replica, which stops streaming for about a second; a
    # connection to a replica that is really gone is redispatched meanwhile
    default-server inter 500ms fall 3 rise 1 on-marked-down shutdown-sessions
{replica_servers}
"""


class HAProxy:
    """HAProxy routing a write port to the node answering /primary and a read port to /replica."""

    def __init__(self, base: Path, nodes: Sequence[Server], checks: str = "inter 500ms fall 2 rise 1") -> None:
        """``checks``: the write backend's check timing (Patroni's sample: inter 3s fall 3 rise 2;
        a push test makes it too slow to matter)."""
        self.binary = require_binary("haproxy")
        self.base = base
        self.write_port, self.read_port = free_port(), free_port()
        servers = "\n".join(f"    server {n.name} {getattr(n, 'host', '127.0.0.1')}:{n.pg_port} check port {n.api_port}"
                            for n in nodes)
        self.config_path = base / "haproxy.cfg"
        self.socket = base / "haproxy.sock"  # the runtime API (pgha pooler's HAProxy push)
        self.config_path.write_text(HAPROXY_TEMPLATE.format(socket=self.socket, write_port=self.write_port,
                                                            read_port=self.read_port, checks=checks,
                                                            primary_servers=servers, replica_servers=servers))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.base / "haproxy.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config_path)], stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        wait_for("haproxy listening", lambda: _port_open(self.write_port), 10)
        # HAProxy starts every server as up; give its checks (inter 500ms, fall 2) time to mark
        # the wrong ones down before anyone is told the ports are ready.
        time.sleep(1.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


