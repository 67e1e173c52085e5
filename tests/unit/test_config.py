"""Config files: errors name the file, the key and the value; env overrides reach every key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgha import errors as e
from pgha.agent import methods
from pgha.config import load_local_config

GOOD = """
scope: demo
name: n1
etcd: {hosts: "127.0.0.1:2379,127.0.0.1:22379"}
postgresql:
  data_dir: /var/lib/postgresql/15/main
  parameters: {max_connections: 50}
bootstrap:
  dcs: {ttl: 6, loop_wait: 1, retry_timeout: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.yml"
    p.write_text(text)
    return p


def test_valid_file_loads(tmp_path: Path) -> None:
    cfg = load_local_config(write(tmp_path, GOOD), environ={})
    assert cfg.etcd.urls() == ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
    assert cfg.bootstrap.dcs.ttl == 6 and cfg.prefix == "/pgha/demo/"


def test_environment_overrides_nested_keys_and_free_form_maps(tmp_path: Path) -> None:
    env = {"PGHA_POSTGRESQL_DATA_DIR": "/data", "PGHA_TAGS_NOFAILOVER": "true",
           "PGHA_POSTGRESQL_PARAMETERS_WORK_MEM": "4MB", "PGHA_BOOTSTRAP_DCS_MAXIMUM_LAG_ON_FAILOVER": "2048"}
    cfg = load_local_config(write(tmp_path, GOOD), environ=env)
    assert cfg.postgresql.data_dir == "/data"
    assert cfg.tags.nofailover is True
    assert cfg.postgresql.parameters["work_mem"] == "4MB"
    assert cfg.bootstrap.dcs.maximum_lag_on_failover == 2048


@pytest.mark.parametrize(("text", "needle"), [
    (GOOD.replace("data_dir:", "data_dirr:"), "postgresql.data_dirr: unknown key"),
    (GOOD.replace("ttl: 6", "ttl: six"), "bootstrap.dcs.ttl: Input should be a valid integer"),
    (GOOD.replace("ttl: 6, loop_wait: 1", "ttl: 5, loop_wait: 2"), "loop_wait + 2*retry_timeout must be <= ttl"),
    (GOOD.replace("127.0.0.1:2379,", "nohostport,"), "etcd.hosts"),
    (GOOD.replace("name: n1", "name: 'n 1'"), "name"),
    ("[1, 2]", "top level must be a mapping"),
    (GOOD + "  method: pgbackrest\n", "method: pgbackrest needs pgbackrest: {stanza"),
    (GOOD + "  method: pgbackrest\n  pgbackrest: {stanza: main, to: 'yesterday'}\n",
     "to 'yesterday' is not an ISO 8601 time"),
    (GOOD + "  method: pgbackrest\n  pgbackrest: {stanza: main, to: '2026-12-05T10:00:00'}\n", "needs a time zone"),
    (GOOD + "  method: pgbackrest\n  pgbackrest: {stanza: main, to: '2026-12-05T10:00:00Z', lsn: '0/1'}\n",
     "give to or lsn, not both"),
    (GOOD + "  method: restic\n", "neither initdb, pgbackrest nor in methods"),
])
def test_invalid_files_name_the_key_and_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(e.ConfigError) as info:
        load_local_config(path, environ={})
    assert needle in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("var", ["PGHA_POSTGRESQL_DATADIR", "PGHA_ETCD_HOSTZ", "PGHA_RESTAPI_LISTEN_ADDR",
                                 "PGHA_BOOTSTRAP_DCS_TTLL"])
def test_a_variable_under_a_known_section_that_names_no_key_is_an_error(tmp_path: Path, var: str) -> None:
    with pytest.raises(e.ConfigError, match=var):
        load_local_config(write(tmp_path, GOOD), environ={var: "/x"})


def test_an_unrelated_pgha_variable_of_a_wrapper_script_only_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_local_config(write(tmp_path, GOOD), environ={"PGHA_VENV": "/opt/venv", "PGHA_HOME": "/srv",
                                                            "PGHA_POSTGRESQL_DATA_DIR": "/data"})
    assert str(cfg.postgresql.data_dir) == "/data"
    assert "PGHA_VENV names no pgha setting: ignored" in caplog.text and "PGHA_HOME" in caplog.text


def test_validate_config_command_exits_non_zero_and_names_the_key(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("ttl: 6", "ttl: 4"))
    out = subprocess.run([sys.executable, "-m", "pgha", "agent", "--validate-config", "-c", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "bootstrap.dcs" in out.stderr and "ttl" in out.stderr
    good = write(tmp_path, GOOD)
    out = subprocess.run([sys.executable, "-m", "pgha", "agent", "--validate-config", "-c", str(good)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout


def test_a_cluster_made_from_a_backup_recovers_to_its_target_with_settings_pgha_writes(tmp_path: Path) -> None:
    text = GOOD + ("  method: pgbackrest\n  pgbackrest: {stanza: main, config: /etc/pgbackrest/pgbackrest.conf,"
                   " to: '2026-12-05T10:00:00+00:00'}\n")
    cfg = load_local_config(write(tmp_path, text), environ={})
    settings = methods.recovery(cfg)
    assert settings == {
        "restore_command": 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=main archive-get %f "%p"',
        "recovery_target_timeline": "latest", "recovery_target_time": "2026-12-05 10:00:00+00:00"}
    to_end = load_local_config(write(tmp_path, GOOD + "  method: pgbackrest\n  pgbackrest: {stanza: main}\n"),
                               environ={})
    assert "recovery_target_time" not in methods.recovery(to_end) and "restore_command" in methods.recovery(to_end)
    assert methods.recovery(load_local_config(write(tmp_path, GOOD), environ={})) == {}
