"""Typed models of the local node configuration and of the dynamic (cluster-wide) configuration.

Every model forbids unknown keys, so a typo is an error that names the key rather than a setting
silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicPostgresql(_Strict):
    parameters: dict[str, Any] = Field(default_factory=dict)
    use_pg_rewind: bool = True
    use_slots: bool = True
    pg_hba: list[str] | None = None


class DynamicConfig(_Strict):
    """Settings shared by every node, stored under ``config`` in etcd and seeded once from
    ``bootstrap.dcs``."""

    ttl: int = Field(30, ge=2, le=3600)
    loop_wait: float = Field(10, gt=0)
    retry_timeout: float = Field(10, gt=0)
    maximum_lag_on_failover: int = Field(1048576, ge=0)
    check_timeline: bool = False
    primary_start_timeout: float = Field(300, ge=0)
    synchronous_mode: bool | Literal["on", "off", "quorum"] = False
    synchronous_mode_strict: bool = False
    synchronous_node_count: int = Field(1, ge=1)
    failsafe_mode: bool = False
    pause: bool = False
    postgresql: DynamicPostgresql = Field(default_factory=DynamicPostgresql)
    standby_cluster: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _timing_fits_in_ttl(self) -> DynamicConfig:
        # The leader must be able to miss one loop, time out one renewal and still finish its
        # demotion before etcd expires its lease; otherwise two writable primaries can overlap.
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError(
                f"loop_wait + 2*retry_timeout must be <= ttl "
                f"(got {self.loop_wait} + 2*{self.retry_timeout} > {self.ttl})"
            )
        return self


class EtcdConfig(_Strict):
    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:2379"])
    protocol: Literal["http", "https"] = "http"
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = None
    password: str | None = None

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [h.strip() for h in v.split(",") if h.strip()]
        return v

    @field_validator("hosts")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one etcd host is required")
        for h in v:
            if "://" in h:
                continue
            host, _, port = h.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{h!r} is not host:port")
        return v

    def urls(self) -> list[str]:
        return [h if "://" in h else f"{self.protocol}://{h}" for h in self.hosts]


class RestApiAuth(_Strict):
    username: str
    password: str = Field(repr=False)


class RestApiConfig(_Strict):
    listen: str = "127.0.0.1:8008"
    connect_address: str | None = None
    authentication: RestApiAuth | None = None
    allowlist: list[str] = Field(default_factory=list)
    allowlist_include_members: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    verify_client: Literal["none", "optional", "required"] = "none"

    @field_validator("allowlist")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address or CIDR network") from exc
        return v

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.connect_address or self.listen}"


class Credentials(_Strict):
    username: str
    password: str | None = None


class Authentication(_Strict):
    superuser: Credentials = Field(default_factory=lambda: Credentials(username="postgres"))
    replication: Credentials = Field(default_factory=lambda: Credentials(username="replicator"))
    rewind: Credentials | None = None


class PostgresqlConfig(_Strict):
    data_dir: str
    bin_dir: str = "/usr/lib/postgresql/15/bin"
    listen: str = "127.0.0.1:5432"
    connect_address: str | None = None
    os_user: str = "postgres"
    authentication: Authentication = Field(default_factory=Authentication)
    parameters: dict[str, Any] = Field(default_factory=dict)
    pg_hba: list[str] | None = None
    basebackup: list[str] = Field(default_factory=lambda: ["--checkpoint=fast"])

    @property
    def host(self) -> str:
        return (self.connect_address or self.listen).rpartition(":")[0]

    @property
    def port(self) -> int:
        return int((self.connect_address or self.listen).rpartition(":")[2])

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Tags(BaseModel):
    """Per-node tags; unknown tags are kept (free-form tags serve ``tag_*`` health checks)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    nofailover: bool = False
    failover_priority: int = Field(1, ge=0)
    noloadbalance: bool = False
    nosync: bool = False
    clonefrom: bool = False
    replicatefrom: str | None = None

    @property
    def can_promote(self) -> bool:
        return not self.nofailover and self.failover_priority > 0


class LogConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Bootstrap(_Strict):
    dcs: DynamicConfig = Field(default_factory=lambda: DynamicConfig())
    initdb: list[str] = Field(default_factory=lambda: ["--encoding=UTF8", "--data-checksums"])


class LocalConfig(_Strict):
    scope: str
    name: str
    namespace: str = "/pgha"
    log: LogConfig = Field(default_factory=LogConfig)
    etcd: EtcdConfig = Field(default_factory=EtcdConfig)
    restapi: RestApiConfig = Field(default_factory=RestApiConfig)
    postgresql: PostgresqlConfig
    tags: Tags = Field(default_factory=lambda: Tags())
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)

    @field_validator("scope", "name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} may hold only letters, digits, '_', '.', '-'")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return "/" + v.strip("/")

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.scope}/"
