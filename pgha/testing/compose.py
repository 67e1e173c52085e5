"""The docker-compose deployment, run for real: a private ``dockerd`` (its own data root, socket
and exec root under a temporary directory, no iptables, no forwarding, no default bridge, so the
host's networking is left as it was found) and the images the deployment needs, made without a
registry: a ``debian:bookworm-slim`` base from ``mmdebstrap`` and ``docker import``, stand-ins for
the etcd and HAProxy images from Debian packages, and pgha's own image from the Dockerfile. Each
image is saved under ``CACHE`` keyed by a hash of its inputs, so a second run loads instead of
building."""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .procs import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", "/var/cache")) / "pgha-test-images"
EXTRA_CAS = "/usr/local/share/ca-certificates"
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BASE = "debian:bookworm-slim"
PROJECT = "pgha:local"
STANDINS = {"pgha-test/etcd:standin": "tests/compose/etcd.Dockerfile",
            "pgha-test/haproxy:standin": "tests/compose/haproxy.Dockerfile"}
# What goes into the project image (.dockerignore lets nothing else in).
PROJECT_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "constraints.txt")


def why_not_available() -> str | None:
    """None when a private container engine can be started here, else the one-line reason."""
    if os.geteuid() != 0:
        return "the compose deployment needs root to start a container engine"
    for tool in ("dockerd", "docker", "docker-compose", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./dev installs docker.io, docker-compose and mmdebstrap)"
    return None


def host_network_state() -> dict[str, str]:
    """What a container engine could change on the host: forwarding, bridges, firewall rules."""
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    # The partition lab's bridges (pgbr*) come and go in parallel tests: not the engine's doing.
    bridges = [line.split(":")[1].strip() for line in run("ip", "-o", "link", "show", "type", "bridge").splitlines()]
    return {"ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            "bridges": " ".join(sorted(b for b in bridges if not b.startswith("pgbr"))),
            "nft": run("nft", "list", "ruleset"),
            "iptables": "\n".join(l for l in run("iptables-save").splitlines() if not l.startswith("#"))}


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _extra_cas() -> list[str]:
    return sorted(glob.glob(f"{EXTRA_CAS}/*.crt"))


class EngineUnavailable(RuntimeError):
    """This machine cannot run a container engine (the compose test skips, naming why)."""


@dataclass
class Engine:
    """A dockerd of the test's own; ``stop`` ends exactly that daemon."""

    base: Path
    proc: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.base / 'docker.sock'}",
                "COMPOSE_INTERACTIVE_NO_CLI": "1"}

    def start(self) -> None:
        for d in ("root", "exec"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        with open(self.base / "dockerd.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.base / "root"), "--exec-root", str(self.base / "exec"),
                 "--pidfile", str(self.base / "dockerd.pid"), "-H", f"unix://{self.base / 'docker.sock'}",
                 "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with contextlib.suppress(TimeoutError):
            wait_for("dockerd answering or gone", lambda: self._exited() or self._answers() or None, 60, interval=0.5)
        if not self._answers():
            last = (self.dockerd_log().strip().splitlines() or ["no output"])[-1]
            self.stop()
            raise EngineUnavailable(f"dockerd did not start: {last[-300:]}")

    def _exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def _answers(self) -> bool:
        return not self._exited() and self.docker("info", check=False).returncode == 0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        # dockerd leaves mounts behind under its roots (the host's network namespace bind-mounted
        # at exec/netns/default, say): unmount the deepest first, then remove the directory.
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def mounts(self) -> list[str]:
        """Mount points under this engine's directory."""
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [p for p in points if p == str(self.base) or p.startswith(f"{self.base}/")]

    def docker(self, *args: str, check: bool = True, timeout: float = 600,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=stdin is None,
                           timeout=timeout, input=stdin)
        out = p.stdout if isinstance(p.stdout, str) else p.stdout.decode(errors="replace")
        err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {p.returncode}: {err.strip()[-2000:]}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def dockerd_log(self) -> str:
        try:
            return (self.base / "dockerd.log").read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    # -- images ----------------------------------------------------------------------------------

    def _cached(self, tag: str, key: str, build: Callable[[], None]) -> None:
        tar = CACHE / f"{tag.replace('/', '_').replace(':', '_')}-{key}.tar"
        if tar.exists():
            self.docker("load", "-i", str(tar))
            self.log.append(f"{tag}: loaded from {tar}")
            return
        t0 = time.monotonic()
        build()
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob(f"{tag.replace('/', '_').replace(':', '_')}-*.tar"):
            old.unlink()
        self.docker("save", "-o", str(tar) + ".part", tag)
        os.replace(str(tar) + ".part", tar)
        self.log.append(f"{tag}: built in {time.monotonic() - t0:.0f} s, saved as {tar}")

    def base_key(self) -> str:
        recipe = b"mmdebstrap --variant=minbase bookworm ca-certificates"
        return _digest(recipe, *(Path(c).read_bytes() for c in _extra_cas()))

    def build_base(self) -> None:
        def build() -> None:
            hooks: list[str] = []
            if _extra_cas():
                hooks = [f'--customize-hook=cp {" ".join(_extra_cas())} "$1{EXTRA_CAS}/"',
                         '--customize-hook=chroot "$1" update-ca-certificates']
            tar = self.base / "base.tar"
            subprocess.run(["mmdebstrap", "--variant=minbase", "--include=ca-certificates", "--quiet",
                            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                            *hooks, "bookworm", str(tar)], check=True, capture_output=True, timeout=600)
            self.docker("import", "--change", 'CMD ["bash"]', str(tar), BASE)
            tar.unlink()
        self._cached(BASE, self.base_key(), build)

    def _build_args(self) -> list[str]:
        # Builds use the host's network (no NAT needed) and, behind a TLS-inspecting proxy, the
        # image's store, which trusts the host's extra CAs.
        return ["--network", "host", *(["--build-arg", f"CA_BUNDLE={HOST_BUNDLE}"] if _extra_cas() else [])]

    def build_standins(self) -> None:
        for tag, dockerfile in STANDINS.items():
            key = _digest(self.base_key().encode(), (ROOT / dockerfile).read_bytes())
            self._cached(tag, key, functools.partial(self._build, tag, str(ROOT / dockerfile), ROOT / "tests" / "compose"))

    def build_project(self) -> None:
        files = sorted([ROOT / f for f in PROJECT_INPUTS] + list((ROOT / "pgha").rglob("*.py"))
                       + list((ROOT / "pgha").rglob("py.typed")))
        key = _digest(self.base_key().encode(), *(str(f.relative_to(ROOT)).encode() + f.read_bytes() for f in files))
        self._cached(PROJECT, key, lambda: self._build(PROJECT, str(ROOT / "Dockerfile"), ROOT))

    def _build(self, tag: str, dockerfile: str, context: Path) -> None:
        self.docker("build", "-q", *self._build_args(), "-t", tag, "-f", dockerfile, str(context), timeout=900)


@dataclass
class Deployment:
    """docker-compose.yml with tests/compose/override.yml, under a compose project of its own."""

    engine: Engine
    project: str

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["docker-compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yml"),
                            "-f", str(ROOT / "tests" / "compose" / "override.yml"), *args],
                           env=self.engine.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
        return p

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.docker("exec", self.container(service), *cmd, check=check, timeout=60)

    def members(self) -> list[dict[str, object]]:
        """``pgha list -f json`` from inside the first node that answers."""
        for svc in ("pg1", "pg2", "pg3"):
            p = self.exec(svc, "pgha", "list", "-c", "/etc/pgha/node.yml", "-f", "json", check=False)
            if p.returncode == 0:
                return list(json.loads(p.stdout))
        return []

    def address(self, service: str) -> str:
        out = self.engine.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                 self.container(service)).stdout.strip()
        return out

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "80", check=False).stdout


def new_engine() -> Engine:
    return Engine(Path(tempfile.mkdtemp(prefix="pgha-docker-")))
