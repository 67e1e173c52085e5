"""Reading a starting server's log: only what it appended since the start, whole lines only, and
the one message that means the standby can never open."""

from __future__ import annotations

from pathlib import Path

from pgha.postgres.startup import LogTail, log_size, wal_gone

GONE = ("2026-11-28 05:15:33.277 GMT [28065] FATAL:  could not receive data from WAL stream: ERROR:  "
        "requested WAL segment 000000080000000000000011 has already been removed\n")


def test_the_tail_reads_what_was_appended_since_the_start_in_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "pg.log"
    log.write_text("an earlier start: " + GONE)
    tail = LogTail(log, log_size(log))
    assert tail.read() == ""
    with log.open("a") as f:
        f.write(GONE[:60])  # the server is mid-line
    assert tail.read() == ""
    with log.open("a") as f:
        f.write(GONE[60:])
    assert wal_gone(tail.read()) == "000000080000000000000011"
    assert tail.read() == ""


def test_a_missing_log_reads_as_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "none.log"
    assert log_size(missing) == 0 and LogTail(missing, 0).read() == ""
    assert wal_gone("LOG:  started streaming WAL from primary at 0/11000000 on timeline 7") is None


def test_quick_start_runs_only_for_an_agent_with_a_plain_pgha_file() -> None:
    from pgha.agent.quickstart import config_path, target

    assert config_path(["agent", "-c", "n1.yml"]) == "n1.yml"
    assert config_path(["agent", "--config=n1.yml"]) == "n1.yml"
    assert config_path(["agent", "-c", "n1.yml", "--validate-config"]) is None
    assert config_path(["list", "-c", "n1.yml"]) is None and config_path([]) is None
    plain = {"scope": "demo", "name": "n1", "etcd": {"hosts": "a:2379,b:2379"},
             "postgresql": {"data_dir": "/d"}}
    t = target(plain, {})
    assert t is not None and t.urls == ("http://a:2379", "http://b:2379") and t.prefix == "/pgha/demo/"
    assert target({**plain, "namespace": "service/"}, {}).prefix == "/service/demo/"  # type: ignore[union-attr]
    # anything the stdlib path does not read the way the agent does is left to the agent
    assert target(plain, {"PGHA_NAME": "n2"}) is None
    assert target(plain, {"PATRONI_SCOPE": "x"}) is None
    assert target({**plain, "etcd": {"hosts": ["a:2379"], "protocol": "https"}}, {}) is None
    assert target({**plain, "etcd": {"hosts": ["a:2379"], "username": "u"}}, {}) is None
    assert target({**plain, "etcd3": {"hosts": ["a:2379"]}}, {}) is None
    assert target({**plain, "watchdog": {"mode": "automatic"}}, {}) is None
    assert target({**plain, "name": None}, {}) is None


def test_quick_start_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, pgha.agent.quickstart, yaml; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'aiohttp', 'psycopg', 'click'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
