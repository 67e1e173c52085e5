"""Permanent replication slots (``slots`` in the dynamic config) and the slots the agent leaves
alone (``ignore_slots``).

The primary keeps each permanent physical slot and publishes its position in ``status``; every
replica keeps a copy advanced to that position, so that after a failover the new primary has the
slot, no further on than its consumer had confirmed, and the consumer resumes without a gap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgha.core.settings import ClusterSettings


def permanent(config: ClusterSettings) -> frozenset[str]:
    """The permanent physical slots' names."""
    return frozenset(name for name, spec in config.slots.items() if getattr(spec, "type", "physical") == "physical")


def ignored(slot: Mapping[str, Any], rules: Sequence[Any]) -> bool:
    """Whether ``slot`` (name, type, database, plugin) matches one of the ``ignore_slots`` rules:
    every field a rule gives must match."""
    for rule in rules:
        fields = {k: getattr(rule, k, None) for k in ("name", "type", "database", "plugin")}
        if all(v is None or slot.get(k) == v for k, v in fields.items()):
            return True
    return False
