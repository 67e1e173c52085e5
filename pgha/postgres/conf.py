"""Render postgresql.conf, pg_hba.conf and replication connection strings (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgha.config.model import Credentials, PostgresqlConfig

# Parameters replication and pg_rewind depend on; an operator's value may raise them, not drop them.
BASE_PARAMETERS: dict[str, Any] = {
    "wal_level": "replica",
    "hot_standby": "on",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_log_hints": "on",
    "wal_keep_size": "128MB",
    "hot_standby_feedback": "on",
    "max_connections": 100,
    "unix_socket_directories": "/tmp",
    "wal_retrieve_retry_interval": "1s",
}

DEFAULT_HBA = [
    "local all all peer",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host replication all 127.0.0.1/32 scram-sha-256",
    "host all all 0.0.0.0/0 scram-sha-256",
    "host replication all 0.0.0.0/0 scram-sha-256",
]


def slot_name(member: str) -> str:
    """Replication slot names allow only [a-z0-9_]."""
    return "".join(ch if ch.isalnum() else "_" for ch in member.lower())


def quote(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def conninfo(host: str, port: int, creds: Credentials, dbname: str | None = None,
             passfile: str | None = None, **extra: Any) -> str:
    """A libpq connection string; with ``passfile`` the password stays out of it (and so out of
    postgresql.conf and the server log, which prints primary_conninfo on every change)."""
    parts: dict[str, Any] = {"host": host, "port": port, "user": creds.username}
    if passfile:
        parts["passfile"] = passfile
    elif creds.password:
        parts["password"] = creds.password
    if dbname:
        parts["dbname"] = dbname
    parts.update(extra)
    return " ".join(f"{k}={_ci(v)}" for k, v in parts.items())


def _ci(v: Any) -> str:
    s = str(v)
    if s and all(ch.isalnum() or ch in "._-/:" for ch in s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_postgresql_conf(local: PostgresqlConfig, dynamic_parameters: Mapping[str, Any],
                           name: str, primary_conninfo: str | None, slot: str | None,
                           restore: bool = True) -> str:
    """``restore``: with the archive's restore_command, if one is set. Without it for an old
    primary starting as a standby, until its rejoin is settled: at start, Postgres adopts the
    newest timeline whose history it can restore and checks that timeline's fork only against its
    last checkpoint, not against the end of its WAL. With the new primary's history in the
    archive, crash recovery would replay this node's own WAL past the fork (writes the new
    primary never had), serve them, then stall. Without the archive it replays its WAL on its own
    timeline, and Postgres refuses the new one if that forked before the replay point."""
    params: dict[str, Any] = dict(BASE_PARAMETERS)
    params.update(dynamic_parameters)
    params.update(local.parameters)
    if not restore:
        params.pop("restore_command", None)
    params["listen_addresses"] = local.listen_host
    params["port"] = local.listen_port
    params["cluster_name"] = name
    if primary_conninfo:
        params["primary_conninfo"] = primary_conninfo
        if slot:
            params["primary_slot_name"] = slot
    lines = ["# Written by pgha before every start; edit the pgha config instead."]
    lines += [f"{k} = {quote(v)}" for k, v in sorted(params.items())]
    return "\n".join(lines) + "\n"


def render_hba(entries: list[str] | None) -> str:
    return "# Written by pgha.\n" + "\n".join(entries or DEFAULT_HBA) + "\n"


def render_pgpass(entries: list[Credentials]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(":", "\\:")

    return "".join(f"*:*:*:{esc(c.username)}:{esc(c.password or '')}\n" for c in entries if c.password)


def rewind_argv(binary: str, data_dir: str, source: str) -> list[str]:
    """pg_rewind onto ``source``. Never ``--no-sync``: a crash right after a rewind must not leave
    a torn data directory behind."""
    return [binary, "-D", data_dir, "--source-server", source, "--progress"]
