"""The pooler watcher's own config file (``pgha pooler -c pooler.yml``), validated like a node's:
a wrong key or type names the key and the file."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from pgha import errors as e
from pgha.config.load import describe, parse_yaml, read_text
from pgha.config.model import EtcdConfig, _Strict


class PgBouncerTarget(_Strict):
    # libpq connection string of PgBouncer's admin console (database ``pgbouncer``, a user in
    # admin_users); the watcher holds these credentials, no agent does.
    admin: str
    # The file PgBouncer %include-s for its [databases] section; the watcher rewrites it whole.
    databases_file: str
    # Database entries, each pointed at the primary: name -> extra connect parameters
    # (``*`` is PgBouncer's fallback: every database of that name on the primary).
    databases: dict[str, str] = Field(default_factory=lambda: {"*": ""})
    # Where the databases point while there is no primary, once a pause ran out: a socket
    # directory with no server in it, so clients get an error at once instead of reaching a node
    # that is not the primary.
    nowhere: str = "/nonexistent/pgha-no-primary"


class HAProxyTarget(_Strict):
    # HAProxy's runtime API: a unix socket path (``stats socket ... level admin``) or host:port.
    socket: str
    # The backend whose servers take writes; its server names are the members' names.
    primary_backend: str = "primary"
    # The backend that takes reads (same server names): a replica a rolling restart drains is set
    # to drain there at once, so that no read session is cut when its checks mark it down. "": none.
    replicas_backend: str = "replicas"


class PoolerConfig(_Strict):
    scope: str
    name: str  # this watcher's name under poolers/ (unique per cluster)
    namespace: str = "/pgha"
    etcd: EtcdConfig = Field(default_factory=EtcdConfig)
    # A pause never lasts longer than this (seconds): then the watcher resumes, pointed at the
    # primary if one is confirmed, else nowhere (clients get errors, not an endless queue).
    max_pause: float = Field(60.0, gt=0, le=3600)
    # The TTL of the watcher's registration: a dead watcher stops being waited for after this.
    lease_ttl: int = Field(10, ge=2, le=300)
    # How often the current primary's /primary is probed while nothing changes (seconds): the
    # window in which a primary that died unannounced still gets statements (which then fail).
    probe_interval: float = Field(0.1, gt=0, le=60)
    pgbouncer: PgBouncerTarget | None = None
    haproxy: HAProxyTarget | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return "/" + v.strip("/")

    @model_validator(mode="after")
    def _something_to_drive(self) -> PoolerConfig:
        if self.pgbouncer is None and self.haproxy is None:
            raise ValueError("set pgbouncer, haproxy or both: the watcher has nothing to drive")
        return self

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.scope}/"

    @property
    def kind(self) -> str:
        return "+".join(k for k in ("pgbouncer", "haproxy") if getattr(self, k) is not None)


def load_pooler_config(path: str | os.PathLike[str]) -> PoolerConfig:
    source = str(path)
    data = parse_yaml(read_text(path, source), source) or {}
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    try:
        return PoolerConfig.model_validate(data)
    except ValidationError as exc:
        raise e.ConfigError(describe(exc, source, data)) from exc
