"""Operator flows shared by the REST handlers and the CLI: the checks, the request written to
etcd or handed to the agent, and the wait for the outcome.

``Inbox`` is the agent's mailbox for requests that only the loop may carry out (restart,
reinitialize, reload); the API holds it instead of the agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgha import errors as e
from pgha.core.cluster import ClusterView, FailoverRequest
from pgha.core.requests import LivePositions, Refusal, check_failover, check_switchover
from pgha.core.settings import ClusterSettings
from pgha.dcs.store import ClusterStore


class Inbox:
    """Requests waiting for the loop; ``wake`` makes the loop look at once."""

    def __init__(self, wake: Callable[[], None] = lambda: None, failsafe_ping: tuple[str, float] | None = None,
                 keep_ping: Callable[[str, float], None] = lambda primary, at: None) -> None:
        self.restart_at: float | None = None  # epoch seconds; 0: now
        self.reinit_requested = False
        self.reload_requested = False
        self.failsafe_ping = failsafe_ping  # failsafe mode: the primary that last asked, when (monotonic)
        self._keep_ping = keep_ping  # records the ping where an agent restart finds it again
        self.wake = wake

    def request_restart(self, at: float = 0.0) -> None:
        self.restart_at = at
        self.wake()

    def cancel_restart(self) -> bool:
        had, self.restart_at = bool(self.restart_at), None
        return had

    def request_reinit(self) -> None:
        self.reinit_requested = True
        self.wake()

    def failsafe_asked(self, primary: str, at: float) -> None:
        """A primary cut off from etcd asked us to confirm it (``POST /failsafe``) at ``at``
        (monotonic): the loop must not race for the leader key for ttl from then."""
        self.failsafe_ping = (primary, at)
        self._keep_ping(primary, at)

    def request_reload(self) -> None:
        self.reload_requested = True
        self.wake()


@dataclass(frozen=True)
class Outcome:
    status: int
    message: str
    leader: str | None = None


def refused(r: Refusal) -> e.OperationRefused:
    return e.OperationRefused(r.reason, r.status)


async def wait_for_outcome(store: ClusterStore, timeout: float, deadline: float) -> ClusterView | None:
    """Poll etcd until the failover key is gone with a leader in place: the request carried out
    (the new leader clears it) or withdrawn (the leader gave it up). None: still pending."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = await store.load(deadline)
        if view.failover is None and view.leader is not None:
            return view
        await asyncio.sleep(0.1)
    return None


async def _complete(store: ClusterStore, config: ClusterSettings, want: Callable[[str | None], bool],
                    what: str, done: Callable[[str], str]) -> Outcome:
    """Wait for the requested leader change; withdraw the request if it does not happen."""
    timeout = config.ttl * 2 + config.retry_timeout
    view = await wait_for_outcome(store, timeout, config.retry_timeout)
    if view is None:
        view = await store.load(config.retry_timeout)
        await store.clear_failover(view.failover_revision, config.retry_timeout)
        return Outcome(503, f"{what} did not complete within {timeout:.0f}s; see the agents' logs")
    if not want(view.leader):
        # As Patroni answers once the request is gone: the operator learns at once, not after the
        # wait's bound (a killed candidate kept `pgha switchover` waiting 44 s in the matrix).
        return Outcome(503, f"{what} did not happen: {view.leader} leads and withdrew the request "
                            f"(its log says why)", view.leader)
    return Outcome(200, done(view.leader or ""), view.leader)


async def switchover(store: ClusterStore, config: ClusterSettings, leader: str, candidate: str | None,
                     at: float | None, live: Callable[[ClusterView], LivePositions | None]) -> Outcome:
    """Check, write the ``failover`` key, and (unless scheduled) wait until a new leader leads.
    Raises OperationRefused with the status and reason of a refusal."""
    view = await store.load(config.retry_timeout)
    refusal = check_switchover(view, config, leader, candidate, live(view))
    if refusal is not None:
        raise refused(refusal)
    if not await store.set_failover(FailoverRequest(leader, candidate or "", at), 0, config.retry_timeout):
        raise e.OperationRefused("a switchover is already scheduled or in progress", 409)
    if at is not None:
        return Outcome(202, "switchover scheduled")
    return await _complete(store, config, lambda new: new is not None and new != leader, "switchover",
                           lambda new: f"switched over from {leader} to {new}")


async def failover(store: ClusterStore, config: ClusterSettings, candidate: str, leader: str | None) -> Outcome:
    view = await store.load(config.retry_timeout)
    refusal = check_failover(view, config, candidate)
    if refusal is not None:
        raise refused(refusal)
    if not await store.set_failover(FailoverRequest(leader or "", candidate), 0, config.retry_timeout):
        raise e.OperationRefused("a switchover is already scheduled or in progress", 409)
    return await _complete(store, config, lambda new: new == candidate, f"failover to {candidate}",
                           lambda new: f"failed over to {new}")


async def cancel_switchover(store: ClusterStore, config: ClusterSettings) -> Outcome:
    view = await store.load(config.retry_timeout)
    if view.failover is None or view.failover.scheduled_at is None:
        raise e.OperationRefused("no scheduled switchover", 404)
    await store.clear_failover(view.failover_revision, config.retry_timeout)
    return Outcome(200, "scheduled switchover cancelled")


async def _request_and_wait(request: Callable[[], None], done: Callable[[], int], timeout: float,
                            success: str, failure: str) -> Outcome:
    """Hand a request to the loop and wait until the matching counter moves."""
    before = done()
    request()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done() > before:
            return Outcome(200, success)
        await asyncio.sleep(0.05)
    return Outcome(202, failure)  # accepted: the loop carries it out when it can


async def restart_now(inbox: Inbox, restarts: Callable[[], int], timeout: float) -> Outcome:
    """Ask the loop for a restart and wait until one more restart has completed."""
    return await _request_and_wait(inbox.request_restart, restarts, timeout, "restarted successfully",
                                   f"restart requested; still in progress after {timeout:g} s")


async def reload_now(inbox: Inbox, reloads: Callable[[], int], timeout: float) -> Outcome:
    return await _request_and_wait(inbox.request_reload, reloads, timeout, "reloaded configuration",
                                   f"reload requested; not done after {timeout:g} s")
