"""The drill's writer: commits unique ids through a DSN, one at a time, and keeps what each
attempt came to (acknowledged, failed for sure, or unknown: the connection died mid-commit)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psycopg

SETUP = ("CREATE SCHEMA IF NOT EXISTS pgha",
         ("CREATE TABLE IF NOT EXISTS pgha.drill (run text, id int, at timestamptz NOT NULL DEFAULT now(), "
          "PRIMARY KEY (run, id))"))
INSERT = ("INSERT INTO pgha.drill (run, id) VALUES (%s, %s) "
          "RETURNING ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")


@dataclass(frozen=True)
class Op:
    id: int
    outcome: str  # ok | failed | unknown
    at: float  # monotonic: when it was acknowledged (or failed)
    timeline: int = 0  # the timeline it was written on (ok only)


class Writer(threading.Thread):
    def __init__(self, dsn: str, run: str) -> None:
        super().__init__(daemon=True, name="pgha-drill-writer")
        self.dsn, self.run_id = dsn, run
        self.halt = threading.Event()
        self.ops: list[Op] = []
        self._next = 0

    def setup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            for statement in SETUP:
                conn.execute(statement)

    def acked(self, since: float = 0.0) -> int:
        return sum(1 for o in list(self.ops) if o.outcome == "ok" and o.at >= since)

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.halt.is_set():
            self._next += 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                    conn.execute("SET statement_timeout = '5s'")
            except psycopg.Error:
                conn = None
                self.ops.append(Op(self._next, "failed", time.monotonic()))
                time.sleep(0.05)
                continue
            try:
                row = conn.execute(INSERT, (self.run_id, self._next)).fetchone()
                self.ops.append(Op(self._next, "ok", time.monotonic(), int(row[0]) if row else 0))
            except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.CannotConnectNow):
                # refused before it could commit
                self.ops.append(Op(self._next, "failed", time.monotonic()))
                _closed(conn)
                conn = None
            except psycopg.Error:
                self.ops.append(Op(self._next, "unknown", time.monotonic()))
                _closed(conn)
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()


def _closed(conn: psycopg.Connection) -> None:
    """Close a connection that failed; the next attempt opens a new one."""
    try:
        conn.close()
    except psycopg.Error:
        pass
