"""Models of the dynamic config's replication topology: a standby cluster's source, permanent
slots, and the slots the agent leaves alone."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
