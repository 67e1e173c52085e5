"""Waits bounded in time: statements, even on a server that does not answer at all, and polls.

``asyncio.timeout`` alone does not bound a psycopg statement: psycopg catches the cancellation,
sends the server a cancel request and waits for the statement to end, up to 5 s each (psycopg
3.2 and later). On a hung server (a SIGSTOPped postmaster, a storage stall) both waits run in
full, so a 1 s look at Postgres took 10 s and the HA loop saw a hang a whole loop late. Here the
statement runs in a task of its own; when its time is up, its connection is closed under it
first (psycopg then has no query in flight to cancel) and the task is left to unwind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


def close_quietly(conn: psycopg.AsyncConnection[Any] | None) -> None:
    """Close the socket without waiting for the connection's lock (a statement may hold it)."""
    if conn is not None:
        try:
            conn.pgconn.finish()
        except Exception:  # noqa: BLE001 - it is being discarded
            pass


class Opened:
    """The connections a piece of work opened, to close under it when its time is up."""

    def __init__(self) -> None:
        self.conns: list[psycopg.AsyncConnection[Any]] = []

    def add(self, conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            close_quietly(conn)


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned statement's error is expected, not news


async def run(work: Callable[[], Awaitable[T]], timeout: float, close: Callable[[], None]) -> T:
    """``work()`` within ``timeout`` seconds, else TimeoutError after calling ``close`` (which
    must close the connection ``work`` uses). A cancelled caller closes it too."""
    task = asyncio.ensure_future(work())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        close()
        task.cancel()
        task.add_done_callback(_forget)
        raise
    if not done:
        close()
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError
    return task.result()


def timed_out(exc: BaseException) -> bool:
    """A psycopg error that means the server did not answer in time (libpq's connect_timeout),
    not that it refused: a refusal (starting up, too many clients) answers at once."""
    return isinstance(exc, psycopg.OperationalError) and "timeout expired" in str(exc)


async def until(done: Callable[[], bool], limit: float) -> bool:
    """Poll ``done`` every 20 ms for up to ``limit`` seconds; its last answer."""
    end = time.monotonic() + limit
    while not done() and time.monotonic() < end:
        await asyncio.sleep(0.02)
    return done()
