"""Patroni's configuration, read as pgha's: a Patroni YAML file (and Patroni's ``PATRONI_*``
environment variables) translated into pgha's native layout.

Every Patroni key is either translated, accepted as it is, or refused by name: a setting pgha
would silently ignore is a setting the operator believes in force. ``convert`` returns the native
config and a note for each change, which ``pgha convert-config`` prints as comments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from pgha import errors as e
from pgha.config.model import DynamicConfig, DynamicPostgresql

PREFIX = "PATRONI_"
PATRONI_NAMESPACE = "/service"  # Patroni's default: its keys live under /service/<scope>/

# Sections whose presence marks a file as Patroni's (pgha's own files have none of them).
_PATRONI_ONLY = {"etcd3", "consul", "zookeeper", "exhibitor", "kubernetes", "raft", "citus", "ctl"}
_DCS_KEYS = {"host", "hosts", "protocol", "cacert", "cert", "key", "username", "password"}
_RESTAPI_KEYS = {"listen", "connect_address", "certfile", "keyfile", "cafile", "verify_client", "allowlist",
                 "allowlist_include_members"}
_POSTGRESQL_KEYS = {"listen", "connect_address", "data_dir", "bin_dir", "parameters", "pg_hba", "callbacks"}
_AUTH_KEYS = {"username", "password"}
_TAGS_OFF_ONLY = {"nostream"}  # tags pgha accepts only at their default (false)


class _Refusals:
    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: list[str] = []

    def extra(self, section: Mapping[str, Any], allowed: set[str], at: str) -> None:
        for key in section:
            if key not in allowed:
                self.keys.append(f"{at}{key}")

    def check(self) -> None:
        if self.keys:
            raise e.ConfigError("\n".join(f"{self.source}: {k}: a Patroni key pgha does not support yet"
                                          for k in self.keys))


def is_patroni(data: Mapping[str, Any]) -> bool:
    """Whether a config file is Patroni's rather than pgha's own."""
    if _PATRONI_ONLY & data.keys():
        return True
    etcd = data.get("etcd")
    if isinstance(etcd, Mapping) and {"host", "url", "proxy", "srv"} & etcd.keys():
        return True
    pg = data.get("postgresql")
    if isinstance(pg, Mapping) and ("pgpass" in pg or isinstance(pg.get("basebackup"), (dict, list))
                                   and any(isinstance(x, dict) for x in pg.get("basebackup") or [])):
        return True
    initdb = (data.get("bootstrap") or {}).get("initdb") if isinstance(data.get("bootstrap"), Mapping) else None
    return isinstance(initdb, list) and any(isinstance(x, dict) for x in initdb)


def _options(items: Any, at: str, refused: _Refusals) -> list[str]:
    """Patroni's option lists (``- encoding: UTF8``, ``- data-checksums``) as command-line flags."""
    if isinstance(items, Mapping):
        items = [{k: v} for k, v in items.items()]
    out: list[str] = []
    for item in items or []:
        if isinstance(item, str):
            out.append(f"--{item}")
        elif isinstance(item, Mapping) and len(item) == 1:
            (key, value), = item.items()
            out.append(f"--{key}={value}")
        else:
            refused.keys.append(f"{at}: {item!r} (an option is a name or a one-key mapping)")
    return out


def _etcd(data: Mapping[str, Any], refused: _Refusals, notes: list[str]) -> dict[str, Any]:
    section = "etcd3" if "etcd3" in data else "etcd"
    src = data.get(section) or {}
    if not isinstance(src, Mapping):
        refused.keys.append(f"{section} (must be a mapping)")
        return {}
    refused.extra(src, _DCS_KEYS, f"{section}.")
    out = {k: v for k, v in src.items() if k in _DCS_KEYS - {"host", "hosts"}}
    hosts = src.get("hosts", src.get("host"))
    if hosts is not None:
        out["hosts"] = [h.strip() for h in hosts.split(",") if h.strip()] if isinstance(hosts, str) else hosts
    notes.append("etcd3 -> etcd" if section == "etcd3" else
                 "etcd: pgha speaks etcd's v3 API to these hosts (keys a Patroni cluster wrote through the v2 "
                 "API are not visible to it)")
    return out


def _restapi(src: Mapping[str, Any], refused: _Refusals) -> dict[str, Any]:
    refused.extra(src, _RESTAPI_KEYS | {"authentication"}, "restapi.")
    out = {k: v for k, v in src.items() if k in _RESTAPI_KEYS}
    auth = src.get("authentication")
    if isinstance(auth, Mapping):
        refused.extra(auth, _AUTH_KEYS, "restapi.authentication.")
        out["authentication"] = {k: v for k, v in auth.items() if k in _AUTH_KEYS}
    return out


def _method(src: Any, at: str, refused: _Refusals) -> dict[str, Any]:
    """A Patroni method section (``command``, flags, and the rest passed as ``--key=value``)."""
    if not isinstance(src, Mapping):
        refused.keys.append(f"{at} (a method needs a section with its command)")
        return {"command": "false"}
    out: dict[str, Any] = {k: src[k] for k in ("command", "no_params", "keep_data", "recovery_conf") if k in src}
    for flag in ("no_leader", "keep_existing_recovery_conf"):
        if src.get(flag):
            refused.keys.append(f"{at}.{flag}")
    params = {k: v for k, v in src.items() if k not in out and k not in ("no_leader", "keep_existing_recovery_conf")}
    if params:
        out["params"] = params
    return out


def _postgresql(src: Mapping[str, Any], refused: _Refusals, notes: list[str]) -> dict[str, Any]:
    passthrough = _POSTGRESQL_KEYS | {"create_replica_methods"}
    custom = [m for m in src.get("create_replica_methods") or [] if m != "basebackup"]
    refused.extra(src, passthrough | {"authentication", "pgpass", "basebackup", "config_dir", *custom}, "postgresql.")
    out = {k: v for k, v in src.items() if k in passthrough}
    if custom:
        out["replica_methods"] = {m: _method(src.get(m), f"postgresql.{m}", refused) for m in custom}
        notes.append(f"postgresql.{{{','.join(custom)}}} -> postgresql.replica_methods")
    if "config_dir" in src and src["config_dir"] != src.get("data_dir"):
        refused.keys.append("postgresql.config_dir (pgha keeps the configuration in the data directory)")
    if "pgpass" in src:
        notes.append("postgresql.pgpass: dropped (pgha writes its own passfile next to the data directory)")
    auth = src.get("authentication") or {}
    if isinstance(auth, Mapping):
        refused.extra(auth, {"superuser", "replication", "rewind"}, "postgresql.authentication.")
        out["authentication"] = {}
        for role, creds in auth.items():
            if isinstance(creds, Mapping):
                refused.extra(creds, _AUTH_KEYS, f"postgresql.authentication.{role}.")
                out["authentication"][role] = {k: v for k, v in creds.items() if k in _AUTH_KEYS}
    if "basebackup" in src:
        out["basebackup"] = _options(src["basebackup"], "postgresql.basebackup", refused)
        notes.append("postgresql.basebackup: options written as pg_basebackup flags")
    return out


def _dcs(src: Mapping[str, Any], refused: _Refusals) -> dict[str, Any]:
    known = set(DynamicConfig.model_fields)
    refused.extra(src, known | {"master_start_timeout"}, "bootstrap.dcs.")
    out = {k: v for k, v in src.items() if k in known}
    if "master_start_timeout" in src:  # Patroni's name before 4.0
        out.setdefault("primary_start_timeout", src["master_start_timeout"])
    pg = src.get("postgresql")
    if isinstance(pg, Mapping):
        refused.extra(pg, set(DynamicPostgresql.model_fields), "bootstrap.dcs.postgresql.")
        # Patroni writes an empty ``parameters:`` as null
        out["postgresql"] = {k: ({} if k == "parameters" and v is None else v) for k, v in pg.items()
                             if k in DynamicPostgresql.model_fields}
    return out


def _bootstrap(src: Mapping[str, Any], refused: _Refusals, notes: list[str]) -> dict[str, Any]:
    method = src.get("method", "initdb")
    refused.extra(src, {"dcs", "initdb", "method", str(method)}, "bootstrap.")
    out: dict[str, Any] = {}
    if method != "initdb":
        out["method"] = method
        out["methods"] = {method: _method(src.get(method), f"bootstrap.{method}", refused)}
        notes.append(f"bootstrap.{method} -> bootstrap.methods.{method}")
    if isinstance(src.get("dcs"), Mapping):
        out["dcs"] = _dcs(src["dcs"], refused)
    if "initdb" in src:
        out["initdb"] = _options(src["initdb"], "bootstrap.initdb", refused)
        notes.append("bootstrap.initdb: options written as initdb flags")
    return out


def _tags(src: Mapping[str, Any], refused: _Refusals) -> dict[str, Any]:
    for key in _TAGS_OFF_ONLY:
        if src.get(key):
            refused.keys.append(f"tags.{key}")
    return {k: v for k, v in src.items() if k not in _TAGS_OFF_ONLY}


# Patroni's log keys that shape its own text lines: pgha's have a fixed shape (and json).
_LOG_SHAPE_ONLY = {"format", "dateformat", "traceback_level", "max_queue_size", "loggers", "mode",
                   "deduplicate_heartbeat_logs"}


def _log(src: Mapping[str, Any], refused: _Refusals, notes: list[str]) -> dict[str, Any]:
    refused.extra(src, {"level", "type", "dir", "file_num", "file_size"} | _LOG_SHAPE_ONLY, "log.")
    out: dict[str, Any] = {k: src[k] for k in ("dir", "file_num", "file_size") if k in src}
    if "level" in src:
        out["level"] = str(src["level"]).upper()
    if "type" in src:
        out["format"] = "json" if str(src["type"]).lower() == "json" else "text"
    for key in sorted(_LOG_SHAPE_ONLY & src.keys()):
        notes.append(f"log.{key}: dropped (pgha's lines have a fixed shape: log.format text or json)")
    return out


def convert(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """pgha's native config for a Patroni config, and what changed. Raises ConfigError naming
    every Patroni key pgha does not support."""
    refused = _Refusals(source)
    notes: list[str] = []
    sections = {"scope", "name", "namespace", "restapi", "postgresql", "bootstrap", "tags", "watchdog", "log",
                "etcd", "etcd3"}
    refused.extra(data, sections, "")
    out: dict[str, Any] = {k: data[k] for k in ("scope", "name") if k in data}
    out["namespace"] = data.get("namespace", PATRONI_NAMESPACE)
    if "namespace" not in data:
        notes.append(f"namespace: {PATRONI_NAMESPACE} (Patroni's default; pgha's own is /pgha)")
    if "etcd" in data and "etcd3" in data:
        refused.keys.append("etcd (with etcd3: give one)")
    out["etcd"] = _etcd(data, refused, notes)
    if isinstance(data.get("restapi"), Mapping):
        out["restapi"] = _restapi(data["restapi"], refused)
    if isinstance(data.get("postgresql"), Mapping):
        out["postgresql"] = _postgresql(data["postgresql"], refused, notes)
    if isinstance(data.get("bootstrap"), Mapping):
        out["bootstrap"] = _bootstrap(data["bootstrap"], refused, notes)
    if isinstance(data.get("tags"), Mapping):
        out["tags"] = _tags(data["tags"], refused)
    if "watchdog" in data:
        out["watchdog"] = data["watchdog"]
    if isinstance(data.get("log"), Mapping):
        out["log"] = _log(data["log"], refused, notes)
    refused.check()
    return out, notes


def environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings in Patroni's ``PATRONI_*`` variables, in Patroni's layout, as Patroni reads
    them. ``PATRONI_CONFIGURATION`` is not read: Patroni reads it only when it is given no file,
    and pgha is always given one."""
    out: dict[str, Any] = {}

    def put(section: str | None, key: str, value: Any) -> None:
        target = out if section is None else out.setdefault(section, {})
        target[key] = value

    for var, value in environ.items():
        if not var.startswith(PREFIX) or not value:
            continue
        rest = var[len(PREFIX):].lower()
        if rest in ("name", "namespace", "scope"):
            put(None, rest, value)
        elif rest in ("log_level", "loglevel"):
            put("log", "level", value)
        elif rest[4:] in ("type", "dir", "file_num", "file_size") and rest.startswith("log_"):
            put("log", rest[4:], int(value) if rest.startswith("log_file_") else value)
        elif rest.startswith("restapi_") and rest[8:] in ("username", "password"):
            out.setdefault("restapi", {}).setdefault("authentication", {})[rest[8:]] = value
        elif rest.startswith(("restapi_", "postgresql_")):
            section, key = rest.split("_", 1)
            put(section, key, yaml.safe_load(value) if key in ("allowlist", "allowlist_include_members") else value)
        elif rest.split("_", 1)[0] in ("replication", "superuser", "rewind") and "_" in rest:
            role, key = rest.split("_", 1)
            auth = out.setdefault("postgresql", {}).setdefault("authentication", {})
            auth.setdefault(role, {})[key] = value
        elif rest.split("_", 1)[0] in ("etcd", "etcd3", "consul", "zookeeper", "exhibitor", "kubernetes",
                                       "raft") and "_" in rest:
            section, key = rest.split("_", 1)
            put(section, key, _yaml_list(value) if key == "hosts" else value)
    return out


def _yaml_list(value: str) -> Any:
    """``h1:2379,h2:2379`` or ``'h1:2379','h2:2379'`` as a list, as Patroni parses list variables."""
    if not (value.strip().startswith("-") or "[" in value):
        value = f"[{value}]"
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, mapping by mapping (the environment wins, as in Patroni)."""
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base
