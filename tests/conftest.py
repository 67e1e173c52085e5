"""Shared fixtures: real etcd, Postgres and agents on loopback, always cleaned up."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgha.testing import LocalCluster


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., LocalCluster]]:
    made: list[LocalCluster] = []
    dirs: list[str] = []

    def make(**kwargs: Any) -> LocalCluster:
        d = tempfile.mkdtemp(prefix="pgha-test-")
        dirs.append(d)
        c = LocalCluster(Path(d), **kwargs)
        made.append(c)
        return c

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for c in made:
        if failed:
            print(c.dump_logs())
        c.stop()
    for d in dirs:
        if os.environ.get("KEEP_TEST_DIRS"):  # to read a test's logs after it ran
            print(f"kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def sql(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []
