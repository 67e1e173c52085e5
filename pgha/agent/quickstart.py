"""A restarted primary agent takes its leader key back and re-arms its fence before importing
the rest of pgha (the REST server, psycopg, pydantic, the operator code: most of a second).

The previous run of this agent died (SIGKILL, a crash, ``systemctl kill``) and left Postgres
writable under its fence, and the leader key on its old lease. Here, with the standard library and
PyYAML only: the key is moved onto a new lease by one compare-and-set that holds only if it still
names us on that old lease, unchanged (the agent's own ``TakeOverLeaderKey``), and the fence's
deadline is moved with the new lease. The agent then adopts that lease. Anything unusual (a
Patroni file, TLS or credentials for etcd, ``PGHA_*`` variables, a watchdog, no live fence, a key
that is not ours, etcd slow to answer) skips this: the agent's own loop does the same a little later.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CALL_TIMEOUT = 0.3  # seconds per etcd call: a slow etcd is the agent's business, not ours


@dataclass(frozen=True)
class Target:
    urls: tuple[str, ...]
    prefix: str
    name: str
    data_dir: str


@dataclass(frozen=True)
class Adopted:
    """A lease granted here, now holding our leader key, for the agent's lease keeper."""

    lease: int
    ttl: int
    retry_timeout: float
    granted_at: float  # monotonic, when the grant was sent
    took: float  # seconds from the start of this module's work


def config_path(argv: Sequence[str]) -> str | None:
    """The node file of ``pgha agent -c FILE`` (not ``--validate-config``), else None."""
    if not argv or argv[0] != "agent" or "--validate-config" in argv:
        return None
    for flag in ("-c", "--config"):
        if flag in argv[:-1]:
            return argv[list(argv).index(flag) + 1]
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)


def target(raw: Any, environ: Mapping[str, str]) -> Target | None:
    """Where to look, for a plain pgha node file (None: leave it to the agent)."""
    if any(k.startswith(("PGHA_", "PATRONI_")) for k in environ) or not isinstance(raw, dict):
        return None
    etcd, pg, wd = raw.get("etcd"), raw.get("postgresql"), raw.get("watchdog") or {}
    if not isinstance(etcd, dict) or not isinstance(pg, dict) or not isinstance(wd, dict) or "etcd3" in raw:
        return None
    if set(etcd) - {"hosts", "protocol"} or etcd.get("protocol", "http") != "http" or \
            str(wd.get("mode", "off")).lower() not in ("off", "false"):
        return None
    hosts = etcd.get("hosts")
    hosts = hosts.split(",") if isinstance(hosts, str) else hosts
    name, scope, data_dir = raw.get("name"), raw.get("scope"), pg.get("data_dir")
    if not hosts or not all(isinstance(x, str) for x in (name, scope, data_dir)):
        return None
    namespace = "/" + str(raw.get("namespace", "/pgha")).strip("/")
    return Target(tuple(f"http://{h.strip()}" for h in hosts), f"{namespace}/{scope}/", str(name), str(data_dir))


def _alive(pid_file: str, marker: bytes | None = None) -> bool:
    try:
        with open(pid_file) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker is None or marker in f.read()
    except (OSError, ValueError):
        return False


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class _Etcd:
    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for url in self.urls:
            u = urlsplit(url)
            conn = http.client.HTTPConnection(u.hostname or "", u.port or 2379, timeout=CALL_TIMEOUT)
            try:
                conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = json.loads(resp.read() or b"{}")
                if resp.status == 200:
                    self.urls = [url] + [x for x in self.urls if x != url]  # stay on the one that answers
                    return dict(data)
                last = OSError(f"etcd answered {resp.status}")
            except (OSError, ValueError) as exc:
                last = exc
            finally:
                conn.close()
        raise OSError(f"etcd unreachable: {last}")

    def get(self, key: str) -> dict[str, Any] | None:
        kvs = self.post("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return dict(kvs[0]) if kvs else None


def take_over(t: Target, started: float) -> Adopted | None:
    """Move our leader key onto a new lease and the fence's deadline with it (None: not done)."""
    if not (_alive(t.data_dir + ".fence.pid", b"pgha/fence") and os.path.exists(t.data_dir + ".fence")
            and _alive(os.path.join(t.data_dir, "postmaster.pid"))):
        return None  # no armed fence: Postgres was not left writable by us
    etcd = _Etcd(t.urls)
    try:
        leader = etcd.get(t.prefix + "leader")
        if leader is None or base64.b64decode(leader.get("value", "")).decode() != t.name or not leader.get("lease"):
            return None
        cfg = etcd.get(t.prefix + "config")
        dyn = json.loads(base64.b64decode(cfg["value"])) if cfg else {}
        ttl, retry = int(dyn.get("ttl", 30)), float(dyn.get("retry_timeout", 10))
        sent = time.monotonic()
        lease = int(etcd.post("/v3/lease/grant", {"TTL": str(ttl)})["ID"])
        key = _b64(t.prefix + "leader")
        moved = etcd.post("/v3/kv/txn", {
            "compare": [{"key": key, "target": "VALUE", "result": "EQUAL", "value": _b64(t.name)},
                        {"key": key, "target": "LEASE", "result": "EQUAL", "lease": str(leader["lease"])},
                        {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(leader["mod_revision"])}],
            "success": [{"request_put": {"key": key, "value": _b64(t.name), "lease": str(lease)}}]})
        if not moved.get("succeeded"):
            etcd.post("/v3/lease/revoke", {"ID": str(lease)})
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # The agent's rule (core.lease.fence_deadline): half the demotion margin before the lease can expire.
    deadline = sent + ttl - retry / 2 + time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    tmp = t.data_dir + ".fence.tmp"
    with open(tmp, "w") as f:
        f.write(f"{deadline:.6f}\n")
    os.replace(tmp, t.data_dir + ".fence")
    return Adopted(lease, ttl, retry, sent, time.monotonic() - started)


def run(argv: Sequence[str], environ: Mapping[str, str]) -> Adopted | None:
    started = time.monotonic()
    path = config_path(argv)
    if path is None:
        return None
    try:
        import yaml

        with open(path) as f:
            raw = yaml.safe_load(f)
    except Exception:  # noqa: BLE001 - the agent reports a bad file properly, with its key and line
        return None
    t = target(raw, environ)
    return take_over(t, started) if t is not None else None
