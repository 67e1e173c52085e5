"""pgha runs a cluster from Patroni's own example configs, adjusted only for paths and ports."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.testing import EtcdCluster, Node, free_port, http_request, wait_for
from tests.conftest import sql

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[1] / "patroni" / "configs"


def adjusted(n: int, base: Path, etcd: str) -> Node:
    """postgres<n>.yml with its own ports, data directory and passfile, and the test's etcd."""
    cfg: dict[str, Any] = yaml.safe_load((EXAMPLES / f"postgres{n}.yml").read_text())
    pg_port, api_port = free_port(), free_port()
    d = base / cfg["name"]
    d.mkdir()
    os.chmod(d, 0o755)
    pw = pwd.getpwnam("postgres")  # unix_socket_directories: '..', the data directory's parent
    os.chown(d, pw.pw_uid, pw.pw_gid)
    cfg["etcd"]["host"] = etcd
    cfg["restapi"]["listen"] = cfg["restapi"]["connect_address"] = f"127.0.0.1:{api_port}"
    pg = cfg["postgresql"]
    pg["listen"] = pg["connect_address"] = f"127.0.0.1:{pg_port}"
    pg["data_dir"], pg["pgpass"] = str(d / "data"), str(d / "pgpass")
    return Node(cfg["name"], d, pg_port, api_port, cfg)


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pgha-test-patroni-configs-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_patroni_example_configs_run_a_pgha_cluster(base: Path) -> None:
    etcd = EtcdCluster(base, 1)
    etcd.start()
    nodes = [adjusted(n, base, etcd.hosts[0]) for n in range(3)]
    try:
        for node in nodes:
            node.start()

        def roles() -> list[str] | None:
            codes = [(n.health("/primary"), n.health("/replica")) for n in nodes]
            return sorted("primary" if p == 200 else "replica" for p, r in codes if 200 in (p, r)) or None

        wait_for("one primary and two streaming replicas from Patroni's examples",
                 lambda: roles() == ["primary", "replica", "replica"], 120, interval=0.5)
        leader = next(n for n in nodes if n.health("/primary") == 200)
        status = http_request("GET", leader.api + "/patroni")[1]
        assert status["patroni"]["scope"] == "batman" and status["name"] == leader.name
        # where Patroni keeps its keys: /service/batman/
        key = http_request("POST", f"http://{etcd.hosts[0]}/v3/kv/range",
                           {"key": "L3NlcnZpY2UvYmF0bWFuL2xlYWRlcg=="})[1]  # base64 of /service/batman/leader
        assert key.get("count") == "1", key
        # postgres2.yml guards the REST API's changes with a password, postgres0.yml does not
        guarded = next(n for n in nodes if n.name == "postgresql2")
        assert http_request("POST", guarded.api + "/restart", {})[0] == 401
        sql(leader.dsn(), "CREATE TABLE converted AS SELECT 1 AS x")
        wait_for("the table on every replica", lambda: all(
            sql(n.dsn(), "SELECT count(*) FROM pg_class WHERE relname = 'converted'")[0][0] == 1 for n in nodes), 30)
    except BaseException:
        for n in nodes:
            print(f"===== {n.name}\n{n.log_text()[-3000:]}")
        raise
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()
