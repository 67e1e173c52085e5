"""The deployment files, checked statically: docker-compose.yml parses and is self-consistent,
its configs exist and validate, HAProxy's health checks point at endpoints pgha really serves and
the image is pinned. tests/test_compose.py runs the deployment for real."""

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


def test_haproxy_resolves_nodes_while_running_and_starts_with_a_node_down() -> None:
    text = (ROOT / "configs" / "haproxy.cfg").read_text()
    assert re.search(r"^resolvers (\w+)\n(?:    .*\n)*    parse-resolv-conf", text, re.M)
    defaults = re.findall(r"default-server (.*)", text)
    assert defaults and all("resolvers dns" in d and "init-addr last,libc,none" in d for d in defaults)


def test_nodes_share_one_named_image_and_wait_for_healthy_etcd() -> None:
    services = compose()["services"]
    images = {services[n].get("image") for n in ("pg1", "pg2", "pg3")}
    assert images == {"pgha:local"}
    for n in ("pg1", "pg2", "pg3"):
        assert services[n]["depends_on"] == {f"etcd{i}": {"condition": "service_healthy"} for i in (1, 2, 3)}
    for i in (1, 2, 3):
        assert services[f"etcd{i}"]["healthcheck"]["test"][:2] == ["CMD", "etcdctl"]


def test_image_is_pinned_to_the_tested_runtime_dependencies_and_puts_its_venv_on_path() -> None:
    from pgha.testing.constraints import closure

    pinned = {line.split("==")[0] for line in (ROOT / "constraints.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert pinned == set(closure()), "constraints.txt is out of date: run ./dev constraints"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-c /opt/pgha/constraints.txt" in dockerfile
    assert re.search(r"^ENV PATH=/opt/pgha/venv/bin:", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:][:4] == ["!pyproject.toml", "!README.md", "!constraints.txt", "!pgha/"]
