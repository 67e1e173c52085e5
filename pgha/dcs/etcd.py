"""A small asyncio client for etcd's v3 JSON gateway.

Why not a gRPC library: the released python-etcd3 does not import with current protobuf and has
no endpoint failover; aetcd has no TLS and one endpoint. The gateway speaks plain JSON over HTTP,
which aiohttp handles with TLS, and failover is a loop over the endpoints.

Contract: every call takes a deadline (seconds). Within it the call tries each endpoint in turn,
starting with the one that last answered, asks no endpoint twice before it asked all, and raises ``DcsError`` when none answered in time.
A call that reached etcd and got a definitive answer (a failed compare, a missing key) returns it;
it is never retried on another endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from pgha import errors as e

log = logging.getLogger(__name__)

# gRPC codes etcd answers with when the member cannot serve now; another member may.
_RETRYABLE_GRPC = {1, 4, 13, 14}  # canceled, deadline exceeded, internal, unavailable
_AUTH_GRPC = {16}  # unauthenticated (token expired or invalid)


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str | None) -> str:
    return base64.b64decode(s).decode() if s else ""


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "PUT" or "DELETE"
    key: str
    value: str
    revision: int
    kv: KeyValue | None = None  # the key as the event left it (PUT) or its last state (DELETE)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(raw.get("key")),
        value=unb64(raw.get("value")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


def _event(raw: dict[str, Any]) -> WatchEvent:
    kv = _kv(raw["kv"])
    return WatchEvent(kind=raw.get("type", "PUT"), key=kv.key, value=kv.value, revision=kv.mod_revision, kv=kv)


class _Retry(Exception):
    """This endpoint cannot answer now; try the next one."""


@dataclass(frozen=True)
class Compare:
    """One guard of a transaction: ``target`` is VALUE, CREATE, MOD, VERSION or LEASE."""

    key: str
    target: str
    value: Any
    result: str = "EQUAL"

    def to_json(self) -> dict[str, Any]:
        field = {"VALUE": "value", "CREATE": "create_revision", "MOD": "mod_revision",
                 "VERSION": "version", "LEASE": "lease"}[self.target]
        value = b64(self.value) if self.target == "VALUE" else str(self.value)
        return {"key": b64(self.key), "target": self.target, "result": self.result, field: value}


def put_op(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def delete_op(key: str, prefix: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    return {"request_delete_range": body}


def next_endpoint(current: int, tried: set[int], n: int) -> int:
    """The endpoint a request tries next in this round: the one that last answered any request
    (another request may have found a live member meanwhile), else the next in order after it.
    Never one this round tried already: a hung member that costs a request one share of its
    deadline must not cost it a second before every other member was asked."""
    return next(i for i in ((current + k) % n for k in range(n)) if i not in tried)


class EtcdClient:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if not urls:
            raise e.ConfigError("etcd: at least one endpoint is required")
        self.urls = [u.rstrip("/") for u in urls]
        self._current = 0
        self._ssl: ssl.SSLContext | None = None
        if any(u.startswith("https://") for u in self.urls):
            self._ssl = ssl.create_default_context(cafile=cacert)
            if cert:
                self._ssl.load_cert_chain(cert, key)
        self._username = username
        self._password = password
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.write_revision = 0  # store revision of our last write that took effect

    @property
    def endpoint(self) -> str:
        return self.urls[self._current]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False, limit=16),
                read_bufsize=1 << 20,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _authenticate(self, url: str, timeout: float) -> None:
        body = {"name": self._username, "password": self._password}
        try:
            async with self._http().post(f"{url}/v3/auth/authenticate", json=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Retry(f"{url}: authenticate: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = {"message": text[:200]}
        if resp.status != 200 or "token" not in data:
            raise e.DcsAuthError(f"etcd at {url} refused user {self._username!r}: {data.get('message', resp.status)}")
        self._token = data["token"]

    async def _post_once(self, url: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._username and self._token is None:
            await self._authenticate(url, timeout)
        headers = {"Authorization": self._token} if self._token else {}
        try:
            async with self._http().post(f"{url}{path}", json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _Retry(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise _Retry(f"{url}: not JSON: {text[:200]!r}") from exc
        if resp.status == 200:
            # lease/keepalive is a stream; its one message is wrapped in "result"
            return data.get("result", data) if isinstance(data, dict) else {}
        code = data.get("code") if isinstance(data, dict) else None
        message = data.get("message") or data.get("error") or text[:200]
        if code in _AUTH_GRPC and self._username:
            self._token = None
            raise _Retry(f"{url}: auth token rejected, re-authenticating")
        if code in _RETRYABLE_GRPC or resp.status >= 500 and code is None:
            raise _Retry(f"{url}: {message}")
        raise e.DcsError(f"etcd {path} failed at {url}: {message}")

    async def post(self, path: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST ``body`` to ``path``, failing over across endpoints until ``deadline`` seconds pass."""
        end = time.monotonic() + deadline
        errors: list[str] = []
        n = len(self.urls)
        tried: set[int] = set()
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            if len(tried) == n:  # a round in which no endpoint answered: pause, then go again
                tried.clear()
                await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))
                continue
            idx = next_endpoint(self._current, tried, n)
            # Give each endpoint a fair share of the deadline so one hung member cannot eat it all.
            left = n - len(tried)
            share = remaining if left == 1 else max(remaining / left, 0.2)
            tried.add(idx)
            try:
                result = await self._post_once(self.urls[idx], path, body, min(share, remaining))
            except _Retry as exc:
                errors.append(str(exc))
                continue
            if idx != self._current:
                log.info("etcd: switched to endpoint %s", self.urls[idx])
                self._current = idx
            return result
        last = errors[-1] if errors else "no attempt"
        raise e.DcsError(f"etcd {path}: no endpoint answered within {deadline:.1f}s (last error: {last})")

    # -- key/value -------------------------------------------------------------------------

    async def get_prefix(self, prefix: str, deadline: float, keys_only: bool = False) -> tuple[list[KeyValue], int]:
        """All keys under ``prefix`` and the store revision they were read at (one linearizable
        read); ``keys_only``: without their values."""
        body: dict[str, Any] = {"key": b64(prefix), "range_end": prefix_end(prefix)}
        if keys_only:
            body["keys_only"] = True
        data = await self.post("/v3/kv/range", body, deadline)
        return [_kv(kv) for kv in data.get("kvs", [])], int(data.get("header", {}).get("revision", 0))

    async def get(self, key: str, deadline: float) -> KeyValue | None:
        data = await self.post("/v3/kv/range", {"key": b64(key)}, deadline)
        kvs = data.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def _wrote(self, data: dict[str, Any]) -> None:
        self.write_revision = max(self.write_revision, int(data.get("header", {}).get("revision", 0)))

    async def put(self, key: str, value: str, deadline: float, lease: int = 0) -> None:
        self._wrote(await self.post("/v3/kv/put", put_op(key, value, lease)["request_put"], deadline))

    async def delete(self, key: str, deadline: float, prefix: bool = False) -> int:
        data = await self.post("/v3/kv/deleterange", delete_op(key, prefix)["request_delete_range"], deadline)
        deleted = int(data.get("deleted", 0))
        if deleted:
            self._wrote(data)
        return deleted

    async def txn(self, compare: Sequence[Compare], success: Sequence[dict[str, Any]],
                  failure: Sequence[dict[str, Any]] = (), *, deadline: float) -> bool:
        """Atomically apply ``success`` if every compare holds, else ``failure``; True if it held."""
        body = {"compare": [c.to_json() for c in compare], "success": list(success), "failure": list(failure)}
        data = await self.post("/v3/kv/txn", body, deadline)
        if data.get("succeeded", False):
            self._wrote(data)
            return True
        return False

    # -- leases ----------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, deadline: float) -> int:
        data = await self.post("/v3/lease/grant", {"TTL": str(ttl)}, deadline)
        return int(data["ID"])

    async def lease_keepalive(self, lease: int, deadline: float) -> int:
        """Renew ``lease``; returns the remaining TTL granted, 0 if the lease no longer exists."""
        data = await self.post("/v3/lease/keepalive", {"ID": str(lease)}, deadline)
        return int(data.get("TTL", 0))

    async def lease_revoke(self, lease: int, deadline: float) -> None:
        try:
            await self.post("/v3/lease/revoke", {"ID": str(lease)}, deadline)
        except e.DcsError as exc:
            if "not found" not in str(exc):
                raise

    # -- watch -----------------------------------------------------------------------------

    async def watch_prefix(self, prefix: str, start_revision: int = 0,
                           connect_timeout: float = 2.0) -> AsyncIterator[list[WatchEvent]]:
        """Yield batches of events under ``prefix`` for as long as one endpoint streams them; the
        first batch is empty and says the watch is established (``self.endpoint`` streams it).

        Returns (ends) when the stream breaks or etcd compacted past ``start_revision``; the caller
        reads again and reconnects.
        """
        body: dict[str, Any] = {"create_request": {"key": b64(prefix), "range_end": prefix_end(prefix)}}
        if start_revision:
            body["create_request"]["start_revision"] = str(start_revision)
        url = self.endpoint
        headers = {"Authorization": self._token} if self._token else {}
        try:
            async with self._http().post(
                f"{url}/v3/watch", json=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout),
            ) as resp:
                if resp.status != 200:
                    raise e.DcsError(f"etcd watch at {url}: HTTP {resp.status}")
                while True:
                    line = await resp.content.readline()
                    if not line:
                        return
                    msg = json.loads(line).get("result", {})
                    if msg.get("canceled") or msg.get("compact_revision"):
                        return
                    if msg.get("created") or msg.get("events"):
                        yield [_event(ev) for ev in msg.get("events", [])]
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, json.JSONDecodeError) as exc:
            # Move on so the next watch (and the next call) tries another member.
            self._current = (self._current + 1) % len(self.urls)
            raise e.DcsError(f"etcd watch at {url} broke: {exc}") from exc
