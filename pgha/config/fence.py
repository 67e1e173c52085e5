"""Models of what stops a primary that lost its lease besides the fence process, which always runs:
a watchdog device (Patroni's ``watchdog`` section) and the port gate (``fence``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _yaml_off(v: object) -> object:
    return "off" if v is False else v  # YAML reads a bare ``off`` as false


class WatchdogConfig(_Strict):
    """A hardware or kernel watchdog (``/dev/watchdog``), as Patroni uses it: opened when this node
    is about to take writes, petted on each lease renewal, so that a frozen agent resets the machine
    ``safety_margin`` seconds before its lease can expire. ``required`` refuses leadership without
    a working device; ``automatic`` uses one when it can. The fence process runs in every mode."""

    mode: Literal["off", "automatic", "required"] = "off"
    device: str = "/dev/watchdog"
    safety_margin: float = Field(5, ge=-1)  # -1: half of ttl

    _off = field_validator("mode", mode="before")(_yaml_off)


class FenceConfig(_Strict):
    """``port_gate``: an nftables rule, timed by the kernel, that rejects every packet to Postgres's
    port once the fence's deadline passes (``pgha.agent.gate``), so that a node frozen whole and
    thawed runs no statement its clients send after that. Needs CAP_NET_ADMIN; ``required``
    refuses leadership without it, ``automatic`` uses it when it can."""

    port_gate: Literal["off", "automatic", "required"] = "off"

    _off = field_validator("port_gate", mode="before")(_yaml_off)
