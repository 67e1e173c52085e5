"""Replica creation and bootstrap methods on real processes: a cluster bootstrapped by a restore
script that unpacks a pg_basebackup tar taken earlier, a replica made by the first of its methods
that works, and a node whose every method fails saying so."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pgha.testing import LocalCluster, wait_for
from tests.backrest import shared  # noqa: F401 - a fixture
from tests.conftest import sql

pytestmark = pytest.mark.slow

RESTORE = """#!/bin/sh
# A restore method: unpack a pg_basebackup tar (-Ft -X stream) into --datadir.
echo "$@" >> {calls}
for arg in "$@"; do case "$arg" in --datadir=*) datadir=${{arg#--datadir=}} ;; esac; done
tar -xf {backup}/base.tar -C "$datadir" && tar -xf {backup}/pg_wal.tar -C "$datadir/pg_wal"
"""


def backup_of(c: LocalCluster, into: Path) -> None:
    leader = c.leader()
    sql(leader.dsn(), "CREATE TABLE restored AS SELECT g AS k FROM generate_series(1, 1000) g")
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_basebackup", "-D", str(into), "-Ft", "-X", "stream",
                    "-h", "127.0.0.1", "-p", str(leader.pg_port), "-U", "replicator", "--checkpoint=fast"],
                   env={**os.environ, "PGPASSWORD": "replsecret"}, check=True, capture_output=True, timeout=120)
    for f in into.iterdir():
        f.chmod(0o644)
    into.chmod(0o755)


def test_bootstrap_and_replica_methods_restore_from_a_backup(
        make_cluster: Callable[..., LocalCluster], shared: Path) -> None:
    tmp_path = shared
    source = make_cluster(nodes=1)
    source.start()
    backup, calls = tmp_path / "backup", tmp_path / "calls"
    backup_of(source, backup)
    source.stop()
    script = tmp_path / "restore.sh"
    script.write_text(RESTORE.format(calls=calls, backup=backup))
    script.chmod(0o755)
    calls.touch()
    calls.chmod(0o666)

    c = make_cluster(nodes=3)
    n1, n2, n3 = c.nodes
    for n in c.nodes:
        # recovery_conf: the restored directory recovers (here: to the end of its own WAL, as no
        # archive is given) and promotes onto a new timeline before it starts as the primary
        n.config["bootstrap"].update(method="restore", methods={"restore": {
            "command": str(script), "recovery_conf": {"restore_command": "false"}}})
        pg = n.config["postgresql"]
        pg["replica_methods"] = {"broken": {"command": "false"}, "restore": {"command": str(script)}}
        pg["create_replica_methods"] = ["broken", "restore", "basebackup"]
    n3.config["postgresql"]["create_replica_methods"] = ["broken"]
    c.etcd.start()
    for n in (n1, n2):
        n.config["etcd"]["hosts"] = c.etcd.hosts
        n.start()
    leader = c.wait_healthy(90, replicas=1)
    replica = n2 if leader is n1 else n1
    for n in (leader, replica):  # the backup's rows, on both
        assert sql(n.dsn(), "SELECT count(*) FROM restored")[0][0] == 1000
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("--scope=demo --datadir=") and "--role" not in lines[0]
    assert "--role=replica" in lines[1] and f"--connstring=postgres://replicator@127.0.0.1:{leader.pg_port}/" in lines[1]
    log = replica.log_text()
    assert "replica creation method broken failed" in log and "with method restore" in log
    assert "the restored data directory is a primary" in leader.log_text().split("recovery finished")[-1]
    assert sql(leader.dsn(), "SELECT timeline_id FROM pg_control_checkpoint()")[0][0] == 2

    n3.config["etcd"]["hosts"] = c.etcd.hosts
    n3.start()
    wait_for("n3 reporting that every method failed", lambda: "every replica creation method failed (broken: "
             in n3.log_text(), 60)
    assert n3.postmaster_pid() is None
