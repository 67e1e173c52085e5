"""The deployment files, checked statically (no container engine on the build machines):
docker-compose.yml parses and is self-consistent, its configs exist and validate, and HAProxy's
health checks point at endpoints pgha really serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pgha.api.health import HEALTH_PATHS
from pgha.config import load_local_config
from pgha.core.health import NodeHealth, verdict

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"PGHA_POSTGRESQL_AUTHENTICATION_SUPERUSER_PASSWORD": "x",
           "PGHA_POSTGRESQL_AUTHENTICATION_REPLICATION_PASSWORD": "y"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_references_only_services_and_files_that_exist() -> None:
    c = compose()
    services = c["services"]
    assert {"etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3", "haproxy"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name} mounts missing file {src}"
            else:
                assert src in c.get("volumes", {}), f"{name} uses undeclared volume {src}"
        if "build" in svc:
            assert (ROOT / svc["build"] / "Dockerfile").exists()
    for name in ("pg1", "pg2", "pg3"):
        env = services[name]["environment"]
        assert set(SECRETS) <= set(env)


def test_dockerfile_copies_files_that_exist() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def node_configs() -> list[Path]:
    mounts = [v.split(":")[0] for n in ("pg1", "pg2", "pg3") for v in compose()["services"][n]["volumes"]]
    return [ROOT / m for m in mounts if m.endswith(".yml")]


@pytest.mark.parametrize("path", [*node_configs(), ROOT / "configs" / "node1.yml"], ids=lambda p: p.name)
def test_node_configs_validate(path: Path) -> None:
    cfg = load_local_config(path, environ=SECRETS if path.name.startswith("pg") else {})
    assert cfg.scope == "demo"


def test_haproxy_checks_point_at_real_endpoints_and_ports() -> None:
    text = (ROOT / "configs" / "haproxy.cfg").read_text()
    checks = re.findall(r"option httpchk (\w+) (\S+)", text)
    assert {p.split("?")[0] for _, p in checks} == {"/primary", "/replica"}
    primary = NodeHealth(holds_leader=True, pg_running=True, in_recovery=False, streaming=False, lag=0)
    replica = NodeHealth(holds_leader=False, pg_running=True, in_recovery=True, streaming=True, lag=0)
    for method, path in checks:
        assert method in ("GET", "HEAD", "OPTIONS")
        route, _, query = path.partition("?")
        assert route in HEALTH_PATHS
        params = dict(q.split("=", 1) for q in query.split("&") if q)
        want = primary if route == "/primary" else replica
        assert verdict(route, params, want) == 200
    cfgs = {p.stem: load_local_config(p, environ=SECRETS) for p in node_configs()}
    for name, host, pg_port, api_port in re.findall(r"server (\w+) (\w+):(\d+) .*check port (\d+)", text):
        cfg = cfgs[name]
        assert cfg.postgresql.listen_port == int(pg_port)
        assert cfg.restapi.listen.rpartition(":")[2] == api_port
        assert "on-marked-down shutdown-sessions" in text and "inter 500ms" in text


def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    binary = shutil.which("haproxy")
    assert binary, "haproxy is not installed; install it with: apt-get install -y haproxy"
    local = re.sub(r"\b(pg[123]):", "127.0.0.1:", (ROOT / "configs" / "haproxy.cfg").read_text())
    (tmp_path / "haproxy.cfg").write_text(local)
    out = subprocess.run([binary, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
