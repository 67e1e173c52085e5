"""Typed models of the local node configuration and of the dynamic (cluster-wide) configuration.
Every model forbids unknown keys: a typo is an error naming the key, not a setting ignored."""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgha.config.fence import FenceConfig, WatchdogConfig
from pgha.config.replication import Archive, BackupSection, IgnoreSlot, PermanentSlot, RestoreFrom, StandbyCluster

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Postgres' grammar for a parameter name: an identifier, or class.identifier for extensions.
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*")
MAX_PARAMETER_VALUE = 8192  # characters; longer is a mistake, and would bloat every loop
MAX_DYNAMIC_CONFIG = 64 * 1024  # bytes of JSON in etcd


def check_parameters(v: dict[str, Any]) -> dict[str, Any]:
    """Names Postgres could parse, scalar values without line breaks: nothing a value can smuggle
    into postgresql.conf beyond its own line."""
    for name, value in v.items():
        if not _PARAMETER.fullmatch(name):
            raise ValueError(f"{name!r} is not a Postgres parameter name")
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"{name}: a value must be a string, number or boolean")
        text = str(value)
        if len(text) > MAX_PARAMETER_VALUE:
            raise ValueError(f"{name}: value longer than {MAX_PARAMETER_VALUE} characters")
        if any(ord(ch) < 32 for ch in text):
            raise ValueError(f"{name}: value holds a control character (a line break?)")
    return v


def host_port(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{v!r} is not host:port (port 1-65535)")
    return v


def existing_file(v: str | None) -> str | None:
    if v is not None and not os.path.isfile(v):
        raise ValueError(f"file {v!r} does not exist")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicPostgresql(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    parameters: dict[str, Any] = Field(default_factory=dict)
    use_pg_rewind: bool = True
    use_slots: bool = True
    pg_hba: list[str] | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_parameters(v)


_UNITS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}


def duration_seconds(v: int | str) -> float:
    """Patroni's durations: seconds, or a number followed by ms, s, min, h or d."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|min|h|d)?\s*", str(v))
    if m is None or (isinstance(v, int) and v < 0):
        raise ValueError(f"{v!r} is not a duration: seconds, or a number with ms, s, min, h or d (e.g. 30min)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


class DynamicConfig(_Strict):
    """Settings shared by every node, stored under ``config`` in etcd and seeded once from
    ``bootstrap.dcs``. Strict: a value of the wrong JSON type is refused, not coerced, so what is
    stored is exactly what every agent reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    ttl: int = Field(30, ge=5, le=3600)
    loop_wait: float = Field(10, ge=1, le=3600)
    retry_timeout: float = Field(10, ge=1, le=3600)
    maximum_lag_on_failover: int = Field(1048576, ge=0)
    check_timeline: bool = False
    primary_start_timeout: float = Field(300, ge=0)
    synchronous_mode: bool | Literal["on", "off", "quorum"] = False
    synchronous_mode_strict: bool = False
    synchronous_node_count: int = Field(1, ge=1)
    failsafe_mode: bool = False
    pause: bool = False
    postgresql: DynamicPostgresql = Field(default_factory=DynamicPostgresql)
    standby_cluster: StandbyCluster | None = None
    slots: dict[str, PermanentSlot] = Field(default_factory=dict)
    ignore_slots: list[IgnoreSlot] = Field(default_factory=list)
    # How long the leader keeps the slot of a member that is gone (Patroni's name and default):
    # seconds, or a number with ms, s, min, h or d. 0: dropped at once.
    member_slots_ttl: int | str = "30min"
    # The leader commits one heartbeat row this often (availability accounting); 0 turns it off.
    heartbeat_interval: float = Field(1.0, ge=0, le=60)
    # How long a planned switchover waits for the poolers to pause before it stops the old primary
    # (``core.poolers``); 0 hands over without asking them.
    pooler_pause_timeout: float = Field(5.0, ge=0, le=60)
    archive: Archive | None = None  # continuous WAL archiving on every member (``core.archive``)
    backup: BackupSection = Field(default_factory=BackupSection)  # base backups (``core.backup``)

    @field_validator("member_slots_ttl")
    @classmethod
    def _duration(cls, v: int | str) -> int | str:
        duration_seconds(v)
        return v

    @property
    def member_slots_seconds(self) -> float:
        return duration_seconds(self.member_slots_ttl)

    @field_validator("slots")
    @classmethod
    def _slot_names(cls, v: dict[str, PermanentSlot]) -> dict[str, PermanentSlot]:
        for name in v:
            if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
                raise ValueError(f"{name!r} is not a replication slot name (a-z, 0-9, _; at most 63)")
        return v

    @model_validator(mode="after")
    def _timing_fits_in_ttl(self) -> DynamicConfig:
        # The leader must be able to miss one loop, time out one renewal and still finish its
        # demotion before etcd expires its lease; otherwise two writable primaries can overlap.
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError(f"loop_wait + 2*retry_timeout must be <= ttl "
                             f"(got {self.loop_wait} + 2*{self.retry_timeout} > {self.ttl})")
        return self


class EtcdConfig(_Strict):
    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:2379"])
    protocol: Literal["http", "https"] = "http"
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = Field(None, min_length=1)
    password: str | None = Field(None, min_length=1, repr=False)

    @field_validator("cacert", "cert", "key")
    @classmethod
    def _files(cls, v: str | None) -> str | None:
        return existing_file(v)

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
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)


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

    @field_validator("listen", "connect_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else host_port(v)

    @field_validator("certfile", "keyfile", "cafile")
    @classmethod
    def _files(cls, v: str | None) -> str | None:
        return existing_file(v)

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
    username: str = Field(min_length=1)
    password: str | None = Field(None, min_length=1, repr=False)


class Authentication(_Strict):
    superuser: Credentials = Field(default_factory=lambda: Credentials(username="postgres"))
    replication: Credentials = Field(default_factory=lambda: Credentials(username="replicator"))
    rewind: Credentials | None = None


class Callbacks(_Strict):
    """Scripts run as Patroni runs them: ``<script> <action> <role> <scope>``, in the background,
    never holding up the HA loop; one that outlives ``timeout`` seconds is killed."""

    on_start: str | None = None
    on_stop: str | None = None
    on_restart: str | None = None
    on_reload: str | None = None
    on_role_change: str | None = None
    timeout: float = Field(30, gt=0, le=3600)


class CustomMethod(_Strict):
    """A command that fills the (empty) data directory, e.g. from a backup: to create a replica
    (``postgresql.replica_methods``) or the whole cluster (``bootstrap.methods``). Unless
    ``no_params``, it is given ``--scope``, ``--datadir`` and, for a replica, ``--role=replica``
    and ``--connstring`` (the leader's), then each of ``params`` as ``--key=value``, as Patroni
    does."""

    command: str = Field(min_length=1)
    no_params: bool = False
    keep_data: bool = False  # leave what a failed attempt wrote (else the directory is emptied)
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    recovery_conf: dict[str, Any] | None = None  # bootstrap: recover with these first (e.g. PITR)

    @field_validator("recovery_conf")
    @classmethod
    def _recovery(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else check_parameters(v)


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
    callbacks: Callbacks = Field(default_factory=Callbacks)
    # tried in order until one makes a data directory: ``basebackup`` (pg_basebackup), ``pgbackrest``
    # (a restore from the archive section's repository, then streaming) or a replica_methods entry
    create_replica_methods: list[str] = Field(default_factory=lambda: ["basebackup"], min_length=1)
    replica_methods: dict[str, CustomMethod] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _methods_defined(self) -> PostgresqlConfig:
        for name in self.create_replica_methods:
            if name not in ("basebackup", "pgbackrest") and name not in self.replica_methods:
                raise ValueError(f"create_replica_methods: {name!r} is not basebackup, pgbackrest or in replica_methods")
        return self

    @field_validator("listen", "connect_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else host_port(v)

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_parameters(v)

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
    """``format`` text or json (an object per line); ``dir``: to ``<dir>/pgha.log``, rotated at
    ``file_size`` bytes keeping ``file_num`` files (Patroni's defaults), else to stderr."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    dir: str | None = None
    file_size: int = Field(25_000_000, ge=4096)
    file_num: int = Field(4, ge=0)


class Bootstrap(_Strict):
    dcs: DynamicConfig = Field(default_factory=lambda: DynamicConfig())
    initdb: list[str] = Field(default_factory=lambda: ["--encoding=UTF8", "--data-checksums"])
    method: str = "initdb"  # pgbackrest (from ``pgbackrest``), or a name in ``methods``: a command
    methods: dict[str, CustomMethod] = Field(default_factory=dict)
    pgbackrest: RestoreFrom | None = None

    @model_validator(mode="after")
    def _method_defined(self) -> Bootstrap:
        if self.method == "pgbackrest" and "pgbackrest" not in self.methods and self.pgbackrest is None:
            raise ValueError("method: pgbackrest needs pgbackrest: {stanza: ..., to: ...} (what to restore)")
        if self.method not in ("initdb", "pgbackrest") and self.method not in self.methods:
            raise ValueError(f"method: {self.method!r} is neither initdb, pgbackrest nor in methods")
        return self


class LocalConfig(_Strict):
    scope: str
    name: str
    namespace: str = "/pgha"
    log: LogConfig = Field(default_factory=LogConfig)
    etcd: EtcdConfig = Field(default_factory=EtcdConfig)
    restapi: RestApiConfig = Field(default_factory=RestApiConfig)
    postgresql: PostgresqlConfig
    tags: Tags = Field(default_factory=lambda: Tags())
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    fence: FenceConfig = Field(default_factory=FenceConfig)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)

    @field_validator("scope", "name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"{v!r} may hold only letters, digits, '_', '.', '-'")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return "/" + v.strip("/")

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.scope}/"
