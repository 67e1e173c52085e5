"""The pooler's controller: a thin async shell around ``pooler.decide``.

It follows the cluster's keys with one etcd watch, registers itself under ``poolers/<name>``
(bound to its own lease), probes the leader's ``/primary``, runs ``plan`` and carries it out on
PgBouncer and/or HAProxy. It keeps the time a pause began in a file beside the [databases] file,
so that a controller restarted by its supervisor (``pooler.supervisor``) still ends that pause
within its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import aiohttp

from pgha import errors as e
from pgha.core.cluster import ClusterView, Member
from pgha.core.poolers import PoolerRecord
from pgha.dcs.cache import WatchedCluster
from pgha.dcs.etcd import EtcdClient
from pgha.pooler.config import PoolerConfig
from pgha.pooler.decide import Held, Plan, Seen, plan
from pgha.pooler.haproxy import HAProxyDriver
from pgha.pooler.pgbouncer import PgBouncerDriver
from pgha.pooler.sentinel import Sentinel, stopped

log = logging.getLogger("pgha.pooler")

FAST = 0.02  # how often to look while a leader is not yet confirmed (the switchover's gap)


class Probe:
    """The latest answer of one member's ``/primary``."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.ok = False
        self.at = 0.0

    def confirmed(self, now: float, fresh: float) -> str | None:
        return self.name if self.ok and now - self.at <= fresh else None


class Watcher:
    def __init__(self, cfg: PoolerConfig) -> None:
        self.cfg = cfg
        e_ = cfg.etcd
        self.client = EtcdClient(e_.urls(), cacert=e_.cacert, cert=e_.cert, key=e_.key,
                                 username=e_.username, password=e_.password)
        self.changed = asyncio.Event()
        self.cache = WatchedCluster(self.client, cfg.prefix, lambda _keys: self.changed.set())
        self.bouncer = PgBouncerDriver(cfg.pgbouncer) if cfg.pgbouncer is not None else None
        self.haproxy = HAProxyDriver(cfg.haproxy) if cfg.haproxy is not None else None
        self.probe = Probe()
        self.sentinel = Sentinel(self._sentinel_closed)
        self.lease = 0
        self.lease_ok_at = time.monotonic()  # etcd counts as reachable until the first lease_ttl / 2 without it
        self.published: PoolerRecord | None = None
        self.pointed: str | None = None
        self.routed = False  # routed once: a restarted controller resumes whatever it finds
        self.drained: str | None = None  # the HAProxy server drained for the current pause
        self.reads_drained: set[str] = set()  # replicas drained from HAProxy's read backend (a rollout)
        self.held = Held(target=None, pause_wanted_since=self._restored_pause())
        self.http: aiohttp.ClientSession | None = None
        self.last_note = ""

    # -- the pause's start, kept across restarts -------------------------------------------

    @property
    def _pause_file(self) -> Path | None:
        if self.cfg.pgbouncer is None:
            return None
        p = Path(self.cfg.pgbouncer.databases_file)
        return p.with_name(p.name + ".paused-since")

    def _restored_pause(self) -> float | None:
        f = self._pause_file
        try:
            wall = float(f.read_text()) if f is not None else None
        except (OSError, ValueError):
            return None
        return None if wall is None else time.monotonic() - max(0.0, time.time() - wall)

    def _remember_pause(self, since: float | None) -> None:
        f = self._pause_file
        if f is None:
            return
        if since is None:
            f.unlink(missing_ok=True)
        else:
            f.write_text(f"{time.time() - (time.monotonic() - since):.3f}\n")

    # -- looking -------------------------------------------------------------------------

    def _etcd_ok(self, now: float) -> bool:
        return self.cache.endpoint is not None and now - self.lease_ok_at < self.cfg.lease_ttl / 2

    async def _probe(self, member: Member | None, now: float) -> None:
        if member is None or not member.api_url:
            return
        assert self.http is not None
        ok = False
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
            async with self.http.get(f"{member.api_url.rstrip('/')}/primary",
                                     timeout=aiohttp.ClientTimeout(total=0.5)) as resp:
                ok = resp.status == 200
        self.probe.name, self.probe.ok, self.probe.at = member.name, ok, time.monotonic()

    def _sentinel_closed(self, name: str) -> None:
        """The connection held to ``name``'s agent closed: probe it now, not at the next interval."""
        if self.probe.name == name:
            self.probe.at = 0.0
        self.changed.set()

    def _seen(self, view: ClusterView, now: float) -> Seen:
        fresh = self.cfg.probe_interval * 2 + 0.5
        return Seen(now=now, etcd_ok=self._etcd_ok(now), leader=view.leader, handover=view.handover,
                    confirmed=self.probe.confirmed(now, fresh))

    async def look(self) -> tuple[Seen, ClusterView]:
        now = time.monotonic()
        view = self.cache.view()
        etcd_ok = self._etcd_ok(now)
        who = view.leader if etcd_ok else self.held.target
        member = view.members.get(who or "")
        due = FAST if self.probe.confirmed(now, 1e9) != who else self.cfg.probe_interval
        if member is not None and (self.probe.name != who or now - self.probe.at >= due):
            await self._probe(member, now)
        held = who if member is not None and self.probe.confirmed(now, 1e9) == who else None
        self.sentinel.watch(held, member.api_url if member is not None and held else "")
        return self._seen(view, time.monotonic()), view

    # -- acting --------------------------------------------------------------------------

    async def act(self, p: Plan, view: ClusterView) -> None:
        if p.note != self.last_note:
            log.info("%s", p.note)
            self.last_note = p.note
        since = self.held.pause_wanted_since
        if p.wants_pause and since is None:
            since = time.monotonic()
            self._remember_pause(since)
        elif not p.wants_pause and since is not None:
            since = None
            self._remember_pause(None)
        await self._drain_reads(view)
        if p.pause:
            await self._pause(view)
        else:
            await self._route(p.target, view)
            if self.bouncer is not None:
                self.bouncer.warm()
        paused = self.bouncer.paused if self.bouncer is not None else p.pause
        self.held = Held(target=self.held.target if p.pause else p.target, pause_wanted_since=since, paused=paused)

    async def _drain_reads(self, view: ClusterView) -> None:
        """A replica drained by a rolling restart, or about to be promoted by a hand-over, leaves
        HAProxy's read backend now, not at its checks (which would then cut its sessions)."""
        r, h = view.rollout, view.handover
        streaming = {n for n, m in view.members.items() if m.role == "replica" and m.state == "streaming"}
        want = {n for n in view.members if r is not None and r.draining(n)} | ({h.candidate} if h else set())
        # A drained server stays so until it streams as a replica: the promoted candidate, left
        # ready, would take reads until its checks mark it down and cut them.
        want |= {n for n in self.reads_drained if n in view.members and n not in streaming}
        if self.haproxy is None or want == self.reads_drained:
            return
        with contextlib.suppress(e.PghaError):
            await self.haproxy.set_reads(want - self.reads_drained, self.reads_drained - want, streaming)
            log.info("read backend: %s", f"draining {', '.join(sorted(want))}" if want else "no replica drained")
            self.reads_drained = want

    async def _pause(self, view: ClusterView) -> None:
        if self.bouncer is not None:
            failed = self.bouncer.pause_failed()
            if failed is not None:
                log.warning("PAUSE failed, trying again: %s", failed)
            self.bouncer.pause()
        old = self.held.target
        if self.haproxy is not None and old is not None and self.drained != old:
            cut = view.leader != old or view.handover is None
            with contextlib.suppress(e.PghaError):
                await self.haproxy.drain(old, cut)
                self.drained = old

    async def _route(self, target: str | None, view: ClusterView) -> None:
        was_paused = self.bouncer is not None and (self.bouncer.paused or self.bouncer.pausing)
        if self.routed and self.pointed == target and not was_paused and self.drained is None:
            return
        if self.bouncer is not None:
            await self._point_bouncer(target, view)
            await self.bouncer.resume()
        if self.haproxy is not None:
            with contextlib.suppress(e.PghaError):
                await self.haproxy.route_to(target)
        log.info("%s", f"pointed at {target} and resumed" if target else "no primary: pointed nowhere and resumed")
        self.pointed, self.routed, self.drained = target, True, None

    async def _point_bouncer(self, target: str | None, view: ClusterView) -> None:
        assert self.bouncer is not None and self.cfg.pgbouncer is not None
        m = view.members.get(target or "")
        if m is not None and m.host and m.port:
            await self.bouncer.point(m.host, m.port)
        else:
            await self.bouncer.point(self.cfg.pgbouncer.nowhere, 5432)

    # -- registration --------------------------------------------------------------------

    async def publish(self, p: Plan) -> None:
        h = self.held
        state = "paused" if h.paused else "pausing" if p.pause else "active" if h.target else "nowhere"
        rec = PoolerRecord(self.cfg.name, state, h.target or "", p.ack if h.paused else 0, self.cfg.kind)
        if rec == self.published or not self.lease:
            return
        with contextlib.suppress(e.DcsError):
            await self.client.put(f"{self.cfg.prefix}poolers/{self.cfg.name}", rec.to_json(),
                                  time.monotonic() + 1.0, lease=self.lease)
            self.published = rec

    async def keep_lease(self) -> None:
        """Hold our registration's lease; a lost lease is granted again and the record rewritten."""
        every = max(0.5, self.cfg.lease_ttl / 4)
        while True:
            try:
                if not self.lease:
                    self.lease = await self.client.lease_grant(self.cfg.lease_ttl, time.monotonic() + 2.0)
                    self.published = None
                    self.changed.set()
                elif await self.client.lease_keepalive(self.lease, time.monotonic() + 2.0) <= 0:
                    self.lease = 0
                    continue
                self.lease_ok_at = time.monotonic()
            except e.DcsError as exc:
                log.debug("pooler lease: %s", exc)
            await asyncio.sleep(every)

    # -- the loop --------------------------------------------------------------------------

    async def step(self, bound: float | None = None) -> Plan:
        seen, view = await self.look()
        p = plan(seen, self.held, self.cfg.max_pause if bound is None else bound)
        await self.act(p, view)
        await self.publish(p)
        return p

    async def run(self) -> None:
        self.http = aiohttp.ClientSession()
        tasks = [asyncio.create_task(self.cache.run(lambda: time.monotonic() + 2.0)),
                 asyncio.create_task(self.keep_lease())]
        # Nothing is decided before the first read (or lease_ttl / 2 without one): a watcher
        # starting up must not take "not read yet" for "no leader" and pause a working pool.
        end = time.monotonic() + self.cfg.lease_ttl / 2
        while self.cache.endpoint is None and time.monotonic() < end:
            await asyncio.sleep(0.02)
        try:
            while True:
                self.changed.clear()
                p = await self.step()
                wait = FAST if p.pause or (self.bouncer is not None and self.bouncer.pausing) else \
                    self.cfg.probe_interval
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), wait)
        finally:
            for t in tasks:
                t.cancel()

    async def close(self) -> None:
        """On a clean stop: no pause outlives us (resumed to a confirmed primary, else nowhere),
        and our registration goes at once."""
        with contextlib.suppress(Exception):
            await self.step(bound=0.0)
        await stopped(self.sentinel)
        if self.bouncer is not None:
            self.bouncer.drop_spare()
        if self.lease:
            with contextlib.suppress(e.DcsError):
                await self.client.lease_revoke(self.lease, time.monotonic() + 1.0)
        if self.http is not None:
            await self.http.close()
        await self.client.close()
