"""Models of the dynamic config's replication topology and data paths: a standby cluster's source,
permanent slots, the slots the agent leaves alone, the WAL archive and base backups."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pgha.core import cron, pitr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PermanentSlot(_Strict):
    """A replication slot the primary keeps whatever the members are (Patroni's ``slots``)."""

    type: Literal["physical", "logical"] = "physical"
    database: str | None = None
    plugin: str | None = None

    @model_validator(mode="after")
    def _logical_needs_a_database_and_plugin(self) -> PermanentSlot:
        if self.type == "logical" and not (self.database and self.plugin):
            raise ValueError("a logical slot needs database and plugin (e.g. {type: logical, database: app, "
                             "plugin: pgoutput})")
        if self.type == "physical" and (self.database or self.plugin):
            raise ValueError("database and plugin are for logical slots only (type: logical)")
        return self


class IgnoreSlot(_Strict):
    """Slots matching every given field are left alone (never dropped) by the agent."""

    name: str | None = None
    type: Literal["physical", "logical"] | None = None
    database: str | None = None
    plugin: str | None = None


class StandbyCluster(_Strict):
    """Replicate from another cluster (its primary's ``host`` and ``port``, and/or a
    ``restore_command``): this cluster's leader is a standby leader, the others cascade from it.
    Removing the section promotes the standby leader."""

    host: str | None = Field(None, min_length=1)
    port: int = Field(5432, ge=1, le=65535)
    primary_slot_name: str | None = Field(None, pattern=r"^[a-z0-9_]{1,63}$")
    restore_command: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _has_a_source(self) -> StandbyCluster:
        if self.host is None and self.restore_command is None:
            raise ValueError("standby_cluster needs host (and port) or restore_command")
        return self


class PgBackRest(_Strict):
    stanza: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    config: str | None = None  # pgbackrest.conf, when not the default /etc/pgbackrest/pgbackrest.conf


class RestoreFrom(PgBackRest):
    """``bootstrap.pgbackrest``: a new cluster made from a backup in this repository and stanza,
    recovered to ``to`` (a time) or ``lsn``, else to the archive's end, then promoted."""

    to: str | None = None
    lsn: str | None = None
    set: str | None = None  # a backup label; default: the newest backup that can reach the target

    @model_validator(mode="after")
    def _target(self) -> RestoreFrom:
        pitr.Target.parse(self.to, self.lsn, ("to", "lsn"))
        return self

    @property
    def target(self) -> pitr.Target:
        return pitr.Target.parse(self.to, self.lsn, ("to", "lsn"))


class Archive(_Strict):
    """Continuous WAL archiving on every member (``core.archive``): pgBackRest's commands from
    ``pgbackrest.stanza``, or ``command``/``restore_command`` as given (%p, %f as in Postgres)."""

    pgbackrest: PgBackRest | None = None
    command: str | None = Field(None, min_length=1, max_length=1024)
    restore_command: str | None = Field(None, min_length=1, max_length=1024)
    # /archive answers 503 once a completed WAL segment has waited this long (seconds).
    max_delay: float = Field(300.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _one_source(self) -> Archive:
        if self.pgbackrest is None and not self.command:
            raise ValueError("archive needs pgbackrest: {stanza: ...} or a command")
        for v in (self.command, self.restore_command):
            if v is not None and any(ord(ch) < 32 for ch in v):
                raise ValueError("archive commands must be one line")
        return self

    @property
    def pgbackrest_stanza(self) -> str:
        return self.pgbackrest.stanza if self.pgbackrest else ""

    @property
    def pgbackrest_config(self) -> str:
        return self.pgbackrest.config or "" if self.pgbackrest else ""


class BackupSection(_Strict):
    """Base backups the leader starts on a healthy member (``core.backup``), with pgBackRest and
    the ``archive`` section's stanza: ``schedule`` in cron syntax, in UTC."""

    schedule: str | None = None
    type: Literal["full", "diff", "incr"] = "full"
    source: str = Field("replica", min_length=1)  # replica | primary | a member's name (as pgha backup --from)
    # A backup without an outcome after this long counts as failed (its member died or hung).
    timeout: float = Field(6 * 3600.0, gt=0)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            cron.parse(v)
        return v
