"""A client that writes straight to one node's Postgres, as libpq multi-host clients and poolers
do (not through HAProxy), recording when each commit was acknowledged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pgha.testing import Node, wait_for


class DirectWriter(threading.Thread):
    """Commits a row every 20 ms straight to one node; records when each commit was acknowledged."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node, self.acks, self.halt = node, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with psycopg.connect(self.node.dsn(), autocommit=True, connect_timeout=1) as conn:
                    while not self.halt.is_set():
                        conn.execute("INSERT INTO direct VALUES (now())")
                        self.acks.append(time.monotonic())
                        time.sleep(0.02)
            except psycopg.Error:
                time.sleep(0.02)


@contextmanager
def writing_to(node: Node) -> Iterator[DirectWriter]:
    w = DirectWriter(node)
    w.start()
    try:
        wait_for("direct writes acknowledged", lambda: len(w.acks) > 5, 10)
        yield w
    finally:
        w.halt.set()
        w.join(5)


