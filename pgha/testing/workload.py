"""A client workload for routing tests and ``bench/transparent.py``: short autocommit writes on
persistent connections, optionally one client in 1 s transactions and one idle connection.

It counts what clients see: failed statements, dropped connections (a connection that broke and
had to be opened again), each statement's latency, and the ids acknowledged (to check that each
is on the primary afterwards: an id acknowledged but missing was acknowledged by a node that was
not the primary, or lost)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

LONG_TX = 1.0  # seconds each long transaction lasts
SETUP = "CREATE TABLE IF NOT EXISTS pgha_load (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"


@dataclass
class Tally:
    failed: int = 0
    dropped: int = 0
    acked: list[int] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds) of each short statement
    # (start, seconds beyond its own 1 s) of each long transaction: how much a role change added to it
    long_latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # when each failed statement started
    acked_at: list[float] = field(default_factory=list)  # when each acknowledgement arrived
    acked_sent: list[float] = field(default_factory=list)  # when each acknowledged statement was sent


class Workload:
    def __init__(self, dsn: str, clients: int = 8, long_tx: bool = False, idle: bool = False) -> None:
        self.dsn = dsn
        self.halt = threading.Event()
        self.tally = Tally()
        self._lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        self.threads = [threading.Thread(target=self._short, daemon=True) for _ in range(clients)]
        if long_tx:
            self.threads.append(threading.Thread(target=self._long, daemon=True))
        self.idle_conn: psycopg.Connection | None = None
        self.idle = idle

    def setup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(SETUP)

    def start(self) -> None:
        if self.idle:
            self.idle_conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None)
        for t in self.threads:
            t.start()

    def stop(self) -> Tally:
        self.halt.set()
        for t in self.threads:
            t.join(30)
        return self.tally

    def idle_survived(self) -> bool:
        """The idle connection opened at start still runs a statement."""
        if self.idle_conn is None:
            return False
        try:
            self.idle_conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _next(self) -> int:
        with self._lock:
            return next(self._ids)

    def _record(self, start: float, ok: bool, ident: int | None, error: str = "", long: bool = False) -> None:
        with self._lock:
            took = time.monotonic() - start
            if long:
                self.tally.long_latencies.append((start, max(0.0, took - LONG_TX)))
            else:
                self.tally.latencies.append((start, took))
            if ok and ident is not None:
                self.tally.acked.append(ident)
                self.tally.acked_at.append(time.monotonic())
                self.tally.acked_sent.append(start)
            elif not ok:
                self.tally.failed += 1
                self.tally.failed_at.append(start)
                if len(self.tally.errors) < 50:
                    self.tally.errors.append(error)

    def _connect(self) -> psycopg.Connection | None:
        try:
            # no server-side prepared statements: transaction pooling moves a client between servers
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None)
        except psycopg.Error as exc:
            self._record(time.monotonic(), False, None, f"connect: {exc}")
            time.sleep(0.05)
            return None

    def _loop(self, statement: str, transaction: bool) -> None:
        conn: psycopg.Connection | None = None
        while not self.halt.is_set():
            if conn is None:
                conn = self._connect()
                continue
            ident, start = self._next(), time.monotonic()
            try:
                if transaction:
                    with conn.transaction():
                        conn.execute(statement, (ident,))
                        conn.execute("SELECT pg_sleep(%s)", (LONG_TX,))
                else:
                    conn.execute(statement, (ident,))
                self._record(start, True, ident, long=transaction)
            except psycopg.Error as exc:
                self._record(start, False, None, str(exc).strip().splitlines()[0] if str(exc) else repr(exc),
                             long=transaction)
                if conn.broken or conn.closed:
                    with self._lock:
                        self.tally.dropped += 1
                    conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def _short(self) -> None:
        self._loop("INSERT INTO pgha_load (id) VALUES (%s)", transaction=False)

    def _long(self) -> None:
        self._loop("INSERT INTO pgha_load (id) VALUES (%s)", transaction=True)


def missing_on(dsn: str, acked: list[int]) -> list[int]:
    """The acknowledged ids that ``dsn`` (the primary) does not have."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id FROM pgha_load").fetchall()
    have = {r[0] for r in rows}
    return [i for i in acked if i not in have]


def sent_since(tally: Tally, since: float) -> list[int]:
    """The acknowledged ids whose statement was sent at or after ``since`` (monotonic): after a
    fault, these must all be on the new primary, whatever the old one had not replicated."""
    return [i for i, at in zip(tally.acked, tally.acked_sent) if at >= since]


def added_latency(tally: Tally, since: float) -> float:
    """The longest short statement that started at or after ``since`` (monotonic)."""
    return max((d for s, d in tally.latencies if s >= since), default=0.0)


class Readers:
    """Clients that each open a connection, read and close it, in a loop (a read path through
    HAProxy sees every routing change this way): counts reads done and failed."""

    def __init__(self, dsn: str, clients: int = 4) -> None:
        self.dsn = dsn
        self.halt = threading.Event()
        self.done = 0
        self.failed: list[tuple[float, str]] = []  # (when, epoch s; error)
        self.latencies: list[float] = []  # seconds, of each read done (connection included)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(30)

    def _loop(self) -> None:
        while not self.halt.is_set():
            start = time.time()
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute("SELECT count(*) FROM pg_class").fetchone()
                with self._lock:
                    self.done += 1
                    self.latencies.append(time.time() - start)
            except psycopg.Error as exc:
                with self._lock:
                    self.failed.append((start, str(exc).strip().splitlines()[0] if str(exc) else repr(exc)))
            time.sleep(0.01)
