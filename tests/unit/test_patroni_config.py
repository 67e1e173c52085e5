"""Patroni's configuration files and environment variables, read by pgha: what pgha has is
translated, what it does not have is refused by name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pgha import errors as e
from pgha.cli.main import main
from pgha.config import load_local_config

EXAMPLES = Path(__file__).parents[1] / "patroni" / "configs"


def example(n: int) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((EXAMPLES / f"postgres{n}.yml").read_text())


def write(tmp_path: Path, data: dict) -> Path:  # type: ignore[type-arg]
    p = tmp_path / "patroni.yml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("n", [0, 1, 2])
def test_patroni_documentation_examples_load_unmodified(n: int) -> None:
    cfg = load_local_config(EXAMPLES / f"postgres{n}.yml", environ={})
    assert cfg.scope == "batman" and cfg.name == f"postgresql{n}"
    assert cfg.namespace == "/service" and cfg.prefix == "/service/batman/"  # where Patroni keeps its keys
    assert cfg.etcd.hosts == ["127.0.0.1:2379"] and cfg.restapi.listen == f"127.0.0.1:{8008 + n}"
    assert cfg.postgresql.authentication.rewind is not None
    assert cfg.postgresql.authentication.rewind.username == "rewind_user"
    assert cfg.bootstrap.initdb == ["--encoding=UTF8", "--data-checksums"]
    assert cfg.bootstrap.dcs.postgresql.pg_hba == ["host replication replicator 127.0.0.1/32 md5",
                                                   "host all all 0.0.0.0/0 md5"]


def test_patroni_option_lists_become_flags_and_restapi_auth_is_kept() -> None:
    assert load_local_config(EXAMPLES / "postgres1.yml", environ={}).postgresql.basebackup == [
        "--verbose", "--max-rate=100M"]
    auth = load_local_config(EXAMPLES / "postgres2.yml", environ={}).restapi.authentication
    assert auth is not None and (auth.username, auth.password) == ("username", "password")


def test_etcd3_section_with_tls_and_credentials(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    data = {**example(0), "etcd3": {"hosts": "10.0.0.1:2379,10.0.0.2:2379", "protocol": "https",
                                    "cacert": str(ca), "username": "u", "password": "p"}}
    del data["etcd"]
    cfg = load_local_config(write(tmp_path, data), environ={})
    assert cfg.etcd.urls() == ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
    assert (cfg.etcd.cacert, cfg.etcd.username, cfg.etcd.password) == (str(ca), "u", "p")


def test_every_unsupported_patroni_key_is_refused_by_name(tmp_path: Path) -> None:
    data = example(0)
    data["consul"] = {"host": "x"}
    data["postgresql"]["pg_ctl_timeout"] = 60
    data["postgresql"]["authentication"]["superuser"]["sslmode"] = "require"
    data["log"] = {"level": "INFO", "dir": "/var/log/patroni", "static_fields": {"dc": "a"}}
    data["bootstrap"]["post_init"] = "/x.sh"
    data["bootstrap"]["dcs"]["max_timelines_history"] = 10
    data["tags"]["nostream"] = True
    with pytest.raises(e.ConfigError) as err:
        load_local_config(write(tmp_path, data), environ={})
    lines = str(err.value).splitlines()
    for key in ("consul", "postgresql.pg_ctl_timeout", "postgresql.authentication.superuser.sslmode",
                "log.static_fields", "bootstrap.post_init", "bootstrap.dcs.max_timelines_history", "tags.nostream"):
        assert any(line.endswith(f"patroni.yml: {key}: a Patroni key pgha does not support yet")
                   for line in lines), (key, lines)


def test_patroni_environment_variables_override_the_file_as_patroni_documents(tmp_path: Path) -> None:
    env = {"PATRONI_NAME": "n9", "PATRONI_SCOPE": "gotham", "PATRONI_ETCD3_HOSTS": "'h1:2379','h2:2379'",
           "PATRONI_RESTAPI_LISTEN": "0.0.0.0:9008", "PATRONI_RESTAPI_USERNAME": "admin",
           "PATRONI_RESTAPI_PASSWORD": "s3", "PATRONI_POSTGRESQL_DATA_DIR": "/srv/pg",
           "PATRONI_SUPERUSER_PASSWORD": "su-pass", "PATRONI_REPLICATION_USERNAME": "repl",
           "PATRONI_LOG_LEVEL": "debug", "PATRONI_UNRELATED_THING": "x"}
    data = example(0)
    del data["etcd"]
    cfg = load_local_config(write(tmp_path, data), environ=env)
    assert (cfg.name, cfg.scope, cfg.etcd.hosts) == ("n9", "gotham", ["h1:2379", "h2:2379"])
    assert cfg.restapi.listen == "0.0.0.0:9008" and cfg.restapi.authentication is not None
    assert cfg.restapi.authentication.password == "s3" and cfg.postgresql.data_dir == "/srv/pg"
    assert cfg.postgresql.authentication.superuser.password == "su-pass"
    assert cfg.postgresql.authentication.replication.username == "repl" and cfg.log.level == "DEBUG"


def test_patroni_variables_beside_a_pgha_config_are_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "node.yml"
    p.write_text("scope: demo\nname: n1\npostgresql: {data_dir: /x}\n")
    with caplog.at_level(logging.WARNING):
        cfg = load_local_config(p, environ={"PATRONI_NAME": "other"})
    assert cfg.name == "n1" and "PATRONI_* variables are ignored" in caplog.text


def test_convert_config_prints_a_native_config_that_loads_the_same(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["convert-config", str(EXAMPLES / "postgres1.yml")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# pgha config converted from the Patroni config")
    assert "# - postgresql.pgpass: dropped" in result.output
    native = tmp_path / "node.yml"
    native.write_text(result.output)
    assert load_local_config(native, environ={}) == load_local_config(EXAMPLES / "postgres1.yml", environ={})


def test_convert_config_refuses_unsupported_keys_by_name(tmp_path: Path) -> None:
    data = example(0)
    data["raft"] = {"data_dir": "/x"}
    result = CliRunner().invoke(main, ["convert-config", str(write(tmp_path, data))])
    assert result.exit_code == 1 and "raft: a Patroni key pgha does not support yet" in result.output


def test_patroni_replica_and_bootstrap_methods_are_translated(tmp_path: Path) -> None:
    data = example(0)
    data["postgresql"]["create_replica_methods"] = ["pgbackrest", "basebackup"]
    data["postgresql"]["pgbackrest"] = {"command": "/usr/bin/pgbackrest --stanza=main --delta restore",
                                        "keep_data": True, "no_params": True}
    data["postgresql"]["basebackup"] = {"max-rate": "100M", "checkpoint": "fast"}
    data["bootstrap"]["method"] = "restore"
    data["bootstrap"]["restore"] = {"command": "/srv/restore.sh", "target": "latest",
                                    "recovery_conf": {"restore_command": "cp /arch/%f %p"}}
    cfg = load_local_config(write(tmp_path, data), environ={})
    pg = cfg.postgresql
    assert pg.create_replica_methods == ["pgbackrest", "basebackup"]
    assert pg.replica_methods["pgbackrest"].keep_data and pg.replica_methods["pgbackrest"].no_params
    assert sorted(pg.basebackup) == ["--checkpoint=fast", "--max-rate=100M"]
    restore = cfg.bootstrap.methods["restore"]
    assert cfg.bootstrap.method == "restore" and restore.params == {"target": "latest"}
    assert restore.recovery_conf == {"restore_command": "cp /arch/%f %p"}


def test_a_replica_method_without_its_section_is_an_error_naming_it(tmp_path: Path) -> None:
    p = tmp_path / "node.yml"
    p.write_text("scope: demo\nname: n1\npostgresql: {data_dir: /x, create_replica_methods: [wal_g]}\n")
    with pytest.raises(e.ConfigError, match="create_replica_methods: 'wal_g' is not basebackup, pgbackrest or in replica_methods"):
        load_local_config(p, environ={})
