"""What every operator command needs: where the cluster is (a node's config file, or an etcd
URL and scope), a fresh view of it from etcd, and calls to the agents' REST APIs."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from pgha import errors as e
from pgha.config import load_local_config
from pgha.config.model import EtcdConfig, RestApiAuth
from pgha.core.cluster import ClusterView
from pgha.dcs.etcd import EtcdClient
from pgha.dcs.store import ClusterStore

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    scope: str
    prefix: str
    etcd: EtcdConfig
    api_auth: RestApiAuth | None = None
    api_cafile: str | None = None

    def client(self) -> EtcdClient:
        return EtcdClient(self.etcd.urls(), cacert=self.etcd.cacert, cert=self.etcd.cert, key=self.etcd.key,
                          username=self.etcd.username, password=self.etcd.password)

    def run(self, fn: Callable[[ClusterStore], Awaitable[T]]) -> T:
        """Run ``fn`` with a store on a fresh client; DCS and pgha errors become one clear line."""

        async def go() -> T:
            client = self.client()
            try:
                return await fn(ClusterStore(client, self.prefix, "pgha-cli"))
            finally:
                await client.close()

        try:
            return asyncio.run(go())
        except e.DcsError as exc:
            raise click.ClickException(f"etcd unreachable: {exc}") from exc
        except e.PghaError as exc:
            raise click.ClickException(str(exc)) from exc

    def view(self, require: bool = True) -> ClusterView:
        view = self.run(lambda store: store.load(5.0))
        if require and view.initialize is None and not view.members:
            raise click.ClickException(f"cluster {self.scope} not found in etcd under {self.prefix}")
        return view

    def api(self, method: str, url: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
        """Call an agent; returns (status, JSON body). Unreachable agents become a clear error."""
        headers = {"Content-Type": "application/json"}
        if self.api_auth is not None:
            token = base64.b64encode(f"{self.api_auth.username}:{self.api_auth.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        ctx = ssl.create_default_context(cafile=self.api_cafile) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, {"error": exc.reason}
        except (urllib.error.URLError, OSError) as exc:
            raise click.ClickException(f"agent at {url} unreachable: {getattr(exc, 'reason', exc)}") from exc


def resolve(config_path: str | None, dcs_url: str | None, scope: str | None, namespace: str) -> Target:
    if config_path:
        try:
            cfg = load_local_config(config_path)
        except e.ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        return Target(cfg.scope, cfg.prefix, cfg.etcd, cfg.restapi.authentication, cfg.restapi.cafile)
    if not dcs_url or not scope:
        raise click.UsageError("give -c CONFIG, or --dcs-url with --scope")
    ns = "/" + namespace.strip("/")
    return Target(scope, f"{ns}/{scope}/", EtcdConfig(hosts=[h for h in dcs_url.split(",") if h]))


def cluster_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-c / --dcs-url / --scope / --namespace on every command; passes ``target``."""

    def wrapper(config_path: str | None, dcs_url: str | None, scope: str | None, namespace: str,
                **kwargs: Any) -> Any:
        return fn(target=resolve(config_path, dcs_url, scope, namespace), **kwargs)

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    wrapper.__click_params__ = list(getattr(fn, "__click_params__", []))  # type: ignore[attr-defined]
    for option in (
        click.option("--namespace", default="/pgha", show_default=True),
        click.option("--scope", help="cluster name (with --dcs-url)"),
        click.option("--dcs-url", help="etcd endpoints, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379"),
        click.option("-c", "--config", "config_path", type=click.Path(), envvar="PGHA_CONFIG",
                     help="a node's YAML file (etcd and scope are read from it)"),
    ):
        wrapper = option(wrapper)
    return wrapper
