"""The lease keeper: owns this node's etcd lease and renews it on its own cadence, so that no
action of the loop (a promotion, a hand-over checkpoint, a restart, a clone) can starve renewals.

It also runs the last-resort guard: if the loop has not demoted a writable primary by the time
half of the demotion margin is gone, the guard asks for Postgres to be stopped. Both rules are
``pgha.core.lease``'s; this module only keeps time and talks to etcd.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pgha import errors as e
from pgha.core import lease as rule
from pgha.core.settings import ClusterSettings
from pgha.dcs.etcd import EtcdClient
from pgha.log import Repeats

log = logging.getLogger("pgha")

GUARD_TICK = 0.1  # the guard's period once the instant it watches for is near
GUARD_IDLE = 1.0  # and while it is far: one wake-up a second


class LeaseKeeper:
    def __init__(self, client: EtcdClient, config: Callable[[], ClusterSettings],
                 on_change: Callable[[], None], on_renewed: Callable[[], None] = lambda: None,
                 bound: Callable[[int], bool] = lambda lease: False,
                 on_granted: Callable[[int], None] = lambda lease: None, remembered: int | None = None) -> None:
        self.client = client
        self._on_granted = on_granted  # remember the lease on disk: the next run knows it was ours
        self.remembered = remembered  # the lease of the run before this one, from disk
        self.held: set[int] = set()  # every lease of this run
        self.started_at = time.monotonic()
        self._config = config
        self._on_change = on_change  # wake the loop: a renewal failed, or the lease is about to be unusable
        self._on_renewed = on_renewed  # move the fence's deadline with the lease
        self._bound = bound  # whether our leader key or member record is still bound to a lease
        self.granted_ttl: int | None = None
        self.granted_retry: float | None = None
        self._old_retry = 0.0  # the retiring lease's demotion margin
        self._lock = asyncio.Lock()
        # After a ttl change: the earlier lease, kept alive until nothing of ours is bound to it
        # (the leader key moves by compare-and-set), and until when it is known to live.
        self.retiring: int | None = None
        self.retiring_until: float | None = None
        self.lease: int | None = None
        self.valid_until: float | None = None  # when the lease can first expire, by our clock
        self.ok = False  # the last renewal succeeded
        self.seen_at: float | None = None  # last successful renewal (monotonic)
        self.renewals = 0
        self.failures = 0
        self.max_gap = 0.0
        self._repeats = Repeats(log)

    def adopt(self, lease: int, ttl: int, retry_timeout: float, granted_at: float) -> None:
        """Keep ``lease``, granted at ``granted_at`` (monotonic) before this keeper existed."""
        self.lease, self.granted_ttl, self.granted_retry = lease, ttl, retry_timeout
        self.seen_at, self.valid_until = granted_at, granted_at + ttl
        self.ok = True
        self._granted(lease)

    def _granted(self, lease: int) -> None:
        self.held.add(lease)
        try:
            self._on_granted(lease)
        except OSError as exc:  # without the memory a restart waits out the old lease: never fatal
            log.warning("could not remember lease %x on disk: %s", lease, exc)

    def own_leases(self) -> frozenset[int]:
        """The leases that were ours: this run's and, as remembered on disk, the run's before."""
        return frozenset(self.held | ({self.remembered} if self.remembered else set()))

    def holds(self, now: float) -> bool:
        return rule.holds(self.valid_until, now, self._config(), self.seen_at)

    def deadline(self, leader: bool) -> float:
        """How long one etcd call of the HA loop may take now: for a leader, never past the
        instant its lease stops counting as held, or a hung etcd would hold back the demotion
        that the keeper woke the loop for."""
        return rule.keepalive_deadline(self.valid_until, time.monotonic(), self._config(), leader, self.seen_at)

    async def run(self, leader: Callable[[], bool]) -> None:
        """Renew every ``loop_wait`` until cancelled; wake the loop the moment the lease stops
        counting as held, so a leader demotes in time however long the loop sleeps."""
        while True:
            dynamic, now = self._config(), time.monotonic()
            pause = rule.retry_pause(dynamic, self.ok)
            until = rule.held_until(self.valid_until, self.seen_at, dynamic)
            if until is not None and now < until:
                pause = min(pause, until - now + 0.01)
            await asyncio.sleep(max(0.01, pause))
            if not self.holds(time.monotonic()):
                self._on_change()
            was_ok = self.ok
            try:
                await self.renew(leader())
            except Exception as exc:  # noqa: BLE001 - a keeper that died would leave a lease nobody renews or regrants
                self.ok = False
                self._repeats.error(f"lease renewal failed ({type(exc).__name__}: {exc}); retrying")
            if self.ok != was_ok or not self.ok:
                self._on_change()

    def needs_regrant(self, config: ClusterSettings) -> bool:
        """The lease was granted under another ttl than ``config`` says."""
        return self.lease is not None and self.granted_ttl not in (None, config.ttl)

    async def renew(self, leader: bool, config: ClusterSettings | None = None) -> None:
        async with self._lock:  # the loop may renew too, right after a ttl change
            await self._renew(leader, config or self._config())

    async def _renew(self, leader: bool, dynamic: ClusterSettings) -> None:
        now = time.monotonic()
        deadline = rule.keepalive_deadline(self.valid_until, now, dynamic, leader, self.seen_at)
        try:
            sent = time.monotonic()
            ttl = await self.client.lease_keepalive(self.lease, deadline) if self.lease else 0
            if ttl > 0 and self.needs_regrant(dynamic):
                ttl = await self._regrant(dynamic, sent + ttl, max(0.2, now + deadline - time.monotonic()))
            elif ttl <= 0:
                if self.lease is not None:
                    log.warning("our lease %x expired: any leader key we held is gone", self.lease)
                sent = time.monotonic()
                self.lease = await self.client.lease_grant(dynamic.ttl, max(0.2, now + deadline - sent))
                self._granted(self.lease)
                ttl = self.granted_ttl = dynamic.ttl
                self.granted_retry = dynamic.retry_timeout
            await self._keep_retiring(max(0.2, now + deadline - time.monotonic()))
        except e.DcsError as exc:
            self.ok = False
            self.failures += 1
            self._repeats.error(f"etcd: lease renewal failed: {exc}")
            return
        self._repeats.clear()
        if self.seen_at is not None:
            self.max_gap = max(self.max_gap, sent - self.seen_at)
        self.seen_at = sent
        self.valid_until = sent + ttl
        if self.retiring_until is not None:  # the stricter of the two leases until the move is done
            self.valid_until = min(self.valid_until, self.retiring_until)
        self.ok = True
        self.renewals += 1
        try:
            self._on_renewed()
        except Exception as exc:  # noqa: BLE001 - the lease is renewed; a failed follow-up must not end renewals
            self._repeats.error(f"after a lease renewal: {type(exc).__name__}: {exc}")

    async def _regrant(self, config: ClusterSettings, old_valid_until: float, deadline: float) -> int:
        """The ttl changed: a new lease at the new ttl; the old one (just renewed) retires. Until
        the leader key has moved, the old lease counts with the demotion margin it was granted
        under (expressed against the new margin, which the lease rule subtracts)."""
        log.info("ttl changed from %s to %d s: moving to a new lease", self.granted_ttl, config.ttl)
        new = await self.client.lease_grant(config.ttl, deadline)
        self._granted(new)
        old_retry = self.granted_retry if self.granted_retry is not None else config.retry_timeout
        self.retiring, self.retiring_until = self.lease, old_valid_until - old_retry + config.retry_timeout
        self._old_retry = old_retry
        self.lease, self.granted_ttl, self.granted_retry = new, config.ttl, config.retry_timeout
        return config.ttl

    async def _keep_retiring(self, deadline: float) -> None:
        """Keep a retiring lease alive while our leader key or member record is bound to it."""
        old = self.retiring
        if old is None:
            return
        if self._bound(old):
            sent = time.monotonic()
            left = await self.client.lease_keepalive(old, deadline)
            margin = (self.granted_retry or 0.0) - self._old_retry
            self.retiring_until = sent + left + margin if left > 0 else None
            if left > 0:
                return
        else:
            await self.client.lease_revoke(old, deadline)
            log.info("retired our earlier lease %x: everything of ours is on lease %x", old, self.lease or 0)
        self.retiring = self.retiring_until = None

    async def guard(self, due: Callable[[float], bool], stop: Callable[[], Awaitable[None]],
                    until: Callable[[], float | None]) -> None:
        """Whenever ``due(now)`` (``core.lease.guard_due`` on the latest report), ``stop``; looks
        every tick from half the demotion margin before ``until()`` (the primacy's end) on."""
        while True:
            await asyncio.sleep(rule.guard_pause(until(), time.monotonic(), self._config(), GUARD_TICK, GUARD_IDLE))
            now = time.monotonic()
            if due(now):
                left = (self.valid_until or now) - now
                log.error("leader lease expires in %.1fs and the loop has not demoted: stopping postgres now", left)
                await stop()

    async def revoke(self, deadline: float) -> None:
        if self.lease is None:
            return
        try:
            await self.client.lease_revoke(self.lease, deadline)
            log.info("revoked our lease: leader key and member record released")
        except e.DcsError as exc:
            log.warning("could not revoke our lease (%s): it expires within ttl", exc)
        self.lease, self.valid_until = None, None
