"""Bad input gets a clear error and changes nothing: secret files, config files, the dynamic
config, schedules, parameter values. Each scenario failed before its fix."""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgha import errors as e
from pgha.config import load_local_config
from pgha.config.load import normalized, parse_dynamic_config
from pgha.config.model import DynamicConfig
from pgha.core import report, schedule
from pgha.core.cluster import ClusterView, FailoverRequest
from pgha.log import Repeats
from pgha.postgres import guc
from pgha.postgres.runas import RunAs

NODE = """
scope: demo
name: {name}
etcd: {{hosts: "127.0.0.1:2379"}}
restapi: {{listen: "{listen}"}}
postgresql: {{data_dir: /tmp/x, listen: "{pg_listen}"}}
"""


def node_file(tmp_path: Path, name: str = "n1", listen: str = "127.0.0.1:8008", pg_listen: str = "127.0.0.1:5432",
              extra: str = "") -> Path:
    p = tmp_path / "node.yml"
    p.write_text(NODE.format(name=name, listen=listen, pg_listen=pg_listen) + extra)
    return p


# -- secrets on disk -----------------------------------------------------------------------


def test_secret_file_is_never_readable_by_others_while_it_is_written(tmp_path: Path) -> None:
    target = tmp_path / "pgpass"
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for p in tmp_path.iterdir():
                try:
                    seen.add(stat.S_IMODE(p.stat().st_mode))
                except FileNotFoundError:
                    pass

    old = os.umask(0o022)
    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(5):
            RunAs("postgres").write_file(target, "*:*:*:replicator:secret\n" * 2_000_000)
    finally:
        done.set()
        t.join()
        os.umask(old)
    assert seen and all(mode & 0o077 == 0 for mode in seen), sorted(oct(m) for m in seen)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_postgres_log_is_created_private(tmp_path: Path) -> None:
    fd = RunAs("postgres").open_log(tmp_path / "pg.log")
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "pg.log").stat().st_mode) == 0o600


# -- config files ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"name": '"n4\\n"'}, "name"),
    ({"listen": "nohostport"}, "restapi.listen"),
    ({"pg_listen": "x:abc"}, "postgresql.listen"),
])
def test_validation_catches_what_start_up_would_trip_on(tmp_path: Path, kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(e.ConfigError, match=needle):
        load_local_config(node_file(tmp_path, **kwargs), environ={})


def test_missing_tls_file_and_empty_api_credentials_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "node.yml"
    p.write_text("scope: demo\nname: n1\npostgresql: {data_dir: /tmp/x}\n"
                 "restapi: {certfile: /nonexistent/cert.pem, authentication: {username: '', password: ''}}\n"
                 "etcd: {username: '', password: ''}\n")
    with pytest.raises(e.ConfigError) as err:
        load_local_config(p, environ={})
    text = str(err.value)
    assert "certfile" in text and "does not exist" in text and "authentication.username" in text
    assert "etcd.username" in text and "etcd.password" in text


def test_binary_huge_and_endless_files_end_in_one_error_line(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"scope: x\x00\x01\x02")
    with pytest.raises(e.ConfigError, match="binary"):
        load_local_config(binary, environ={})
    t0 = time.monotonic()
    with pytest.raises(e.ConfigError, match="larger than"):
        load_local_config("/dev/zero", environ={})
    assert time.monotonic() - t0 < 5


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = tmp_path / "laughs.yml"
    p.write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    with pytest.raises(e.ConfigError, match="aliases") as err:
        load_local_config(p, environ={})
    assert len(str(err.value)) < 300
    assert time.monotonic() - t0 < 5


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    p = node_file(tmp_path, extra="scope: other\n")
    with pytest.raises(e.ConfigError, match="duplicate key 'scope'"):
        load_local_config(p, environ={})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_as_a_config_file_is_loaded_or_refused_with_a_config_error(tmp_path: Path, text: str) -> None:
    p = tmp_path / "fuzz.yml"
    p.write_text(text)
    try:
        load_local_config(p, environ={})
    except e.ConfigError:
        pass


yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                         max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["scope", "name", "etcd", "restapi", "postgresql", "tags", "bootstrap",
                                        "log", "namespace"]), yaml_values, max_size=6))
def test_any_yaml_structure_is_loaded_or_refused_with_a_config_error(tmp_path: Path, data: dict[str, Any]) -> None:
    import yaml

    p = tmp_path / "fuzz.yml"
    p.write_text(yaml.safe_dump(data))
    try:
        load_local_config(p, environ={})
    except e.ConfigError:
        pass


# -- the dynamic config ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"pause": "false"}, {"pause": "yes"}, {"ttl": "30"}, {"ttl": 30.5}, {"loop_wait": 0.001}, {"ttl": 4},
    {"retry_timeout": 0}, {"postgresql": {"parameters": {"zz.x = 1\ncluster_name": "evil"}}},
    {"postgresql": {"parameters": {"work_mem": "1MB\nfsync = off"}}},
    {"postgresql": {"parameters": {"work_mem": {"nested": 1}}}},
    {"postgresql": {"parameters": {"application_name": "x" * 9000}}},
])
def test_dynamic_config_refuses_what_cannot_be_stored_exactly(bad: dict[str, Any]) -> None:
    with pytest.raises(e.ConfigError):
        normalized(bad, "PATCH /config")


def test_dynamic_config_is_stored_as_validated_values_with_only_the_given_keys() -> None:
    out = normalized({"ttl": 30, "pause": False, "postgresql": {"parameters": {"work_mem": "8MB"}}}, "x")
    assert out == {"ttl": 30, "pause": False, "postgresql": {"parameters": {"work_mem": "8MB"}}}
    assert parse_dynamic_config(out).pause is False


def test_dynamic_config_over_the_size_limit_is_refused_as_too_large() -> None:
    params = {f"custom.p{i}": "x" * 4000 for i in range(20)}
    with pytest.raises(e.ConfigTooLarge):
        normalized({"postgresql": {"parameters": params}}, "PATCH /config")


# -- parameter values, as Postgres would judge them ----------------------------------------------

CATALOG = guc.catalog([
    ("work_mem", "integer", "kB", "64", "2147483647", None),
    ("shared_buffers", "integer", "8kB", "16", "1073741823", None),
    ("statement_timeout", "integer", "ms", "0", "2147483647", None),
    ("fsync", "bool", "", None, None, None),
    ("wal_level", "enum", "", None, None, ["minimal", "replica", "logical"]),
    ("random_page_cost", "real", "", "0", "1.79769e+308", None),
    ("application_name", "string", "", None, None, None),
])


@pytest.mark.parametrize(("params", "needle"), [
    ({"work_mem": "banana"}, "not a number"),
    ({"work_mem": "4 parsecs"}, "unit 'parsecs'"),
    ({"work_mem": "10ms"}, "unit 'ms'"),
    ({"work_mem": 1}, "outside"),
    ({"statement_timeout": "5MB"}, "unit 'MB'"),
    ({"fsync": "maybe"}, "not a boolean"),
    ({"wal_level": "hot_standby_plus"}, "not one of"),
    ({"random_page_cost": "fast"}, "not a number"),
    ({"wrok_mem": "4MB"}, "unknown parameter"),
])
def test_values_postgres_would_refuse_are_named(params: dict[str, Any], needle: str) -> None:
    found = guc.problems(params, CATALOG)
    assert len(found) == 1 and needle in found[0], found


def test_values_postgres_accepts_pass() -> None:
    ok = {"work_mem": "16MB", "shared_buffers": "128MB", "statement_timeout": "5min", "fsync": "off",
          "wal_level": "Replica", "random_page_cost": 1.1, "application_name": "x", "pg_stat_statements.max": 5,
          "WORK_MEM": 4096}
    assert guc.problems(ok, CATALOG) == []
    assert guc.problems({"work_mem": "banana"}, None) == []  # no catalog yet: Postgres judges on reload


# -- schedules -------------------------------------------------------------------------------------


def test_schedules_beyond_a_year_or_the_calendar_are_refused() -> None:
    now = time.time()
    with pytest.raises(ValueError, match="out of range|more than a year"):
        schedule.parse("9999-12-31T23:59:59-23:59", "schedule", now)
    with pytest.raises(ValueError, match="more than a year"):
        schedule.parse("2100-01-01T00:00:00+00:00", "schedule", now)
    assert schedule.parse(schedule.iso(now + 3600), "schedule", now) == pytest.approx(now + 3600, abs=1)


def test_a_stored_schedule_no_calendar_holds_is_never_due_and_never_breaks_a_view() -> None:
    for raw in ('{"leader": "n1", "candidate": "", "scheduled_at": 1e300}',
                '{"leader": "n1", "candidate": "", "scheduled_at": NaN}'):
        f = FailoverRequest.from_json(raw)
        assert f is not None and f.scheduled_at == math.inf
        assert schedule.iso(f.scheduled_at).startswith("@")
    r = report.NodeReport(name="n1", scope="demo", host="h", port=1, api_url="u", version="v", tags={},
                          config=DynamicConfig(), view=ClusterView(), restart_at=1e300)
    assert report.status(r, 1.0, 2.0)["scheduled_restart"]["schedule"].startswith("@")
    assert report.member(r).scheduled_restart.startswith("@")


def test_repeating_errors_are_logged_once_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    r = Repeats(logging.getLogger("pgha.test"))
    with caplog.at_level(logging.ERROR, logger="pgha.test"):
        for _ in range(150):
            r.error("postgres is unreachable")
    assert [rec.getMessage() for rec in caplog.records] == [
        "postgres is unreachable", "postgres is unreachable (10 times so far)",
        "postgres is unreachable (100 times so far)"]
