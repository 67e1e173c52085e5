"""The etcd JSON-gateway client against real etcd: 3 members, TLS with client certs, auth."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha import errors as e
from pgha.dcs.etcd import Compare, EtcdClient, WatchEvent, put_op
from pgha.testing import EtcdCluster, free_port, wait_for
from tests.certs import make_certs

pytestmark = pytest.mark.slow


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    d = Path(tempfile.mkdtemp(prefix="pgha-etcd-"))
    c = EtcdCluster(d, 3)
    c.start()
    yield c
    c.stop()
    shutil.rmtree(d, ignore_errors=True)


def client_for(c: EtcdCluster) -> EtcdClient:
    return EtcdClient([m.client_url for m in c.members])


def test_kv_txn_and_leases_on_three_members(etcd3: EtcdCluster) -> None:
    async def scenario() -> None:
        cl = client_for(etcd3)
        try:
            lease = await cl.lease_grant(5, 2)
            assert await cl.txn([Compare("/t/leader", "CREATE", 0)], [put_op("/t/leader", "a", lease)], deadline=2)
            assert not await cl.txn([Compare("/t/leader", "CREATE", 0)], [put_op("/t/leader", "b", lease)], deadline=2)
            kv = await cl.get("/t/leader", 2)
            assert kv is not None and kv.value == "a" and kv.lease == lease
            assert await cl.lease_keepalive(lease, 2) == 5
            await cl.lease_revoke(lease, 2)
            assert await cl.get("/t/leader", 2) is None  # bound keys go with the lease
            assert await cl.lease_keepalive(lease, 2) == 0
        finally:
            await cl.close()

    asyncio.run(scenario())


def test_killed_member_fails_over_to_the_next_endpoint(etcd3: EtcdCluster) -> None:
    async def scenario() -> None:
        cl = client_for(etcd3)
        try:
            await cl.put("/t/k", "1", 2)
            etcd3.kill(0)
            t0 = time.monotonic()
            kvs, _ = await cl.get_prefix("/t/", 3)
            assert [kv.value for kv in kvs] == ["1"]
            assert time.monotonic() - t0 < 2
            assert cl.endpoint != etcd3.members[0].client_url
        finally:
            await cl.close()

    asyncio.run(scenario())


def test_hung_member_does_not_eat_the_whole_deadline(etcd3: EtcdCluster) -> None:
    async def scenario() -> None:
        cl = client_for(etcd3)
        try:
            await cl.put("/t/k", "1", 2)
            etcd3.kill(0, signal.SIGSTOP)
            t0 = time.monotonic()
            assert (await cl.get("/t/k", 3)) is not None
            assert time.monotonic() - t0 < 3
        finally:
            etcd3.kill(0, signal.SIGCONT)
            await cl.close()

    asyncio.run(scenario())


def test_a_request_does_not_go_back_to_a_hung_member_when_another_request_switched_endpoint(
        etcd3: EtcdCluster) -> None:
    """The CI failure of a slow-member scenario: a lease renewal spent its first share on the
    hung member, another request meanwhile switched the client to a live member, and the renewal's
    next attempt, counted from the new endpoint, landed on the hung member again. Here the switch
    is made while the renewal waits on the hung member, as a read that found member 2 would."""
    async def scenario() -> None:
        cl = client_for(etcd3)
        asked: list[str] = []
        post_once = cl._post_once

        async def spy(url: str, path: str, body: dict[str, object], timeout: float) -> dict[str, object]:
            asked.append(url)
            if len(asked) == 1:
                cl._current = 2  # what a concurrent request that found member 2 live leaves behind
            return await post_once(url, path, body, timeout)

        try:
            lease = await cl.lease_grant(6, 2)
            etcd3.kill(0, signal.SIGSTOP)
            cl._post_once = spy  # type: ignore[method-assign]
            assert await cl.lease_keepalive(lease, 2.0) == 6
            assert asked == [etcd3.members[0].client_url, etcd3.members[2].client_url]
        finally:
            etcd3.kill(0, signal.SIGCONT)
            await cl.close()

    asyncio.run(scenario())


def test_every_member_down_raises_dcs_error_within_the_deadline(etcd3: EtcdCluster) -> None:
    async def scenario() -> None:
        cl = client_for(etcd3)
        try:
            etcd3.stop()
            t0 = time.monotonic()
            with pytest.raises(e.DcsError, match="no endpoint answered"):
                await cl.get("/t/k", 1.0)
            assert time.monotonic() - t0 < 1.5
        finally:
            await cl.close()

    asyncio.run(scenario())


def test_watch_reports_puts_and_lease_expiry_deletes(etcd3: EtcdCluster) -> None:
    async def scenario() -> None:
        cl = client_for(etcd3)
        seen: list[WatchEvent] = []

        async def watch() -> None:
            async for events in cl.watch_prefix("/w/"):
                seen.extend(events)

        try:
            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            lease = await cl.lease_grant(2, 2)
            await cl.put("/w/leader", "n1", 2, lease=lease)
            await cl.put("/x/other", "ignored", 2)
            for _ in range(60):
                if any(ev.kind == "DELETE" for ev in seen):
                    break
                await asyncio.sleep(0.1)
            task.cancel()
            assert [(ev.kind, ev.key) for ev in seen] == [("PUT", "/w/leader"), ("DELETE", "/w/leader")]
        finally:
            await cl.close()

    asyncio.run(scenario())


def test_a_restarted_watch_cache_is_not_fresh_until_it_read_again(etcd3: EtcdCluster) -> None:
    # The agent restarts the cache when a renewal succeeds after failures (its stream can stall
    # without closing: a one-way cut). The loop reads right after: the cache must not vouch for the
    # view it had until it read again, not only once its task noticed the cancellation.
    from pgha.dcs.cache import WatchedCluster

    async def scenario() -> None:
        cl = client_for(etcd3)
        cache = WatchedCluster(cl, "/c/", lambda keys: None)
        runner = asyncio.create_task(cache.run(lambda: 2.0))
        try:
            await cl.put("/c/leader", "n1", 2)
            for _ in range(50):
                if cache.fresh_on(cl.endpoint) and "/c/leader" in cache._kvs:
                    break
                await asyncio.sleep(0.1)
            assert cache.fresh_on(cl.endpoint)
            cache.restart()
            assert not cache.fresh_on(cl.endpoint)
            await cl.put("/c/leader", "n2", 2)
            for _ in range(50):
                if cache.fresh_on(cl.endpoint) and cache._kvs["/c/leader"].value == "n2":
                    break
                await asyncio.sleep(0.1)
            assert cache.fresh_on(cl.endpoint) and cache._kvs["/c/leader"].value == "n2"
        finally:
            runner.cancel()
            await cl.close()

    asyncio.run(scenario())


class StallingProxy:
    """A TCP proxy to one etcd member that can make the watch streams open now go silent without
    closing (the shape of a NAT or proxy that lost one half of the connection): their requests still
    reach etcd, nothing comes back. Other and later connections pass."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.watches: list[list[bool]] = []  # per watch connection: [stalled]
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def stall_watches(self) -> None:
        for flag in self.watches:
            flag[0] = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        stalled = [False]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, silenceable: bool) -> None:
            while data := await src.read(65536):
                if not silenceable and b"/v3/watch" in data and all(w is not stalled for w in self.watches):
                    self.watches.append(stalled)  # a kept-alive connection carries a watch from now on
                if not (silenceable and stalled[0]):
                    dst.write(data)
                    await dst.drain()

        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
        for w in (writer, up_writer):
            w.close()


def test_a_watch_that_stalls_without_closing_is_caught_by_the_periodic_check_and_read_again(etcd3: EtcdCluster) -> None:
    # Found by test_rejoin: a replica whose watch went silent (the test's forwarder lost its upstream
    # half) kept the expired leader key in its cache and never promoted. Its lease renewals and
    # member-key writes still worked, so nothing else told it.
    from pgha.dcs.cache import WatchedCluster

    async def scenario() -> None:
        proxy = StallingProxy(etcd3.members[0].client_url)
        cl, direct = EtcdClient([await proxy.start()]), client_for(etcd3)
        cache = WatchedCluster(cl, "/s/", lambda keys: None)
        runner = asyncio.create_task(cache.run(lambda: 2.0))
        try:
            await direct.put("/s/leader", "n1", 2)
            await direct.put("/s/members/n1", "{}", 2)
            for _ in range(50):
                if cache.fresh_on(cl.endpoint) and "/s/leader" in cache._kvs:
                    break
                await asyncio.sleep(0.1)
            assert await cache.current(0, 2.0, every=0.0)  # a live stream passes the check
            proxy.stall_watches()
            await direct.delete("/s/leader", 2)
            await asyncio.sleep(0.5)
            # the stall: the cache still shows the deleted key and still vouches for it
            assert "/s/leader" in cache._kvs and cache.fresh_on(cl.endpoint)
            assert await cache.current(0, 2.0, every=60.0)  # the check is not due yet
            assert not await cache.current(0, 2.0, every=0.0)
            assert not cache.fresh_on(cl.endpoint)
            for _ in range(50):
                if cache.fresh_on(cl.endpoint):
                    break
                await asyncio.sleep(0.1)
            assert "/s/leader" not in cache._kvs and await cache.current(0, 2.0, every=0.0)
        finally:
            runner.cancel()
            await cl.close()
            await direct.close()

    asyncio.run(scenario())


def test_tls_with_client_certificates_and_password_auth() -> None:
    d = Path(tempfile.mkdtemp(prefix="pgha-etcd-tls-"))
    proc = None
    try:
        make_certs(d)
        port, peer = free_port(), free_port()
        url = f"https://127.0.0.1:{port}"
        proc = subprocess.Popen(
            ["etcd", "--name", "tls", "--data-dir", str(d / "data"), "--listen-client-urls", url,
             "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"tls=http://127.0.0.1:{peer}", "--cert-file", str(d / "server.crt"),
             "--key-file", str(d / "server.key"), "--client-cert-auth", "--trusted-ca-file", str(d / "ca.crt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctl = ["etcdctl", "--endpoints", url, "--cacert", str(d / "ca.crt"), "--cert", str(d / "client.crt"),
               "--key", str(d / "client.key")]
        wait_for("etcd with TLS", lambda: subprocess.run([*ctl, "endpoint", "health"], capture_output=True).returncode == 0, 20)
        for cmd in (["user", "add", "root:rootpw"], ["user", "add", "pgha:pghapw"], ["role", "add", "pgha"],
                    ["role", "grant-permission", "pgha", "--prefix=true", "readwrite", "/pgha/"],
                    ["user", "grant-role", "pgha", "pgha"], ["auth", "enable"]):
            subprocess.run([*ctl, *cmd], check=True, capture_output=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})

        certs = dict(cacert=str(d / "ca.crt"), cert=str(d / "client.crt"), key=str(d / "client.key"))

        async def scenario() -> None:
            good = EtcdClient([url], username="pgha", password="pghapw", **certs)
            bad = EtcdClient([url], username="pgha", password="wrong", **certs)
            no_cert = EtcdClient([url], username="pgha", password="pghapw", cacert=str(d / "ca.crt"))
            try:
                await good.put("/pgha/k", "v", 3)
                kv = await good.get("/pgha/k", 3)
                assert kv is not None and kv.value == "v"
                with pytest.raises(e.DcsAuthError, match="refused user 'pgha'"):
                    await bad.get("/pgha/k", 3)
                with pytest.raises(e.DcsError):
                    await no_cert.get("/pgha/k", 1)
            finally:
                for c in (good, bad, no_cert):
                    await c.close()

        asyncio.run(scenario())
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
