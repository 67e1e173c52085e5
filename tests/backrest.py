"""The real pgBackRest (Debian's 2.45) for tests: a repository, lock and log directories on the
local filesystem, readable by the Postgres OS user, and the command run as that user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgha.testing import Node, free_port

STANZA = "main"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory the Postgres OS user can read (pytest's own are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="pgha-test-shared-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def require() -> None:
    if shutil.which("pgbackrest") is None:
        pytest.fail("pgbackrest is not installed (./dev installs it)")


def conf(base: Path) -> Path:
    pw = pwd.getpwnam("postgres")
    for d in ("repo", "lock", "log", "spool"):
        (base / d).mkdir(parents=True, exist_ok=True)
        os.chown(base / d, pw.pw_uid, pw.pw_gid)
    path = base / "pgbackrest.conf"
    path.write_text(f"[global]\nrepo1-path={base / 'repo'}\nlock-path={base / 'lock'}\nlog-path={base / 'log'}\n"
                    f"spool-path={base / 'spool'}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n"
                    f"archive-timeout=30\nrepo1-retention-full=9999999\n\n[{STANZA}]\npg1-socket-path=/tmp\n")
    path.chmod(0o644)
    return path


def run(path: Path, node: Node, *args: str) -> str:
    pg = [] if args[0] == "info" else [f"--pg1-path={node.data_dir}", f"--pg1-port={node.pg_port}"]
    cmd = ["pgbackrest", f"--config={path}", f"--stanza={STANZA}", *pg, *args]
    out = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"pgbackrest {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout


def archived(path: Path) -> set[str]:
    """Every file name in the repository's archive."""
    root = Path(path).parent / "repo" / "archive" / STANZA
    return {p.name for p in root.rglob("*") if p.is_file()}


def get(node: Node, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(node.api + path, timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(node: Node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*node.command, *args, "-c", str(node.config_path)], capture_output=True, text=True,
                          timeout=timeout)


def restored_rows(node: Node, into: Path, query: str) -> list[tuple[Any, ...]]:
    """``pgha restore`` of the archive to its end into ``into`` (on a free port), ``query`` run on
    the copy, which is stopped afterwards."""
    port = free_port()
    out = cli(node, "restore", "--into", str(into), "--port", str(port), "--keep-running", "--json", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        dsn = f"host=127.0.0.1 port={port} user=postgres password=supersecret dbname=postgres connect_timeout=3"
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(query).fetchall()  # type: ignore[arg-type]
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(into),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
