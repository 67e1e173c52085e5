"""Parameter values checked the way Postgres will check them, from its own ``pg_settings``
(types, units, ranges, enum values), before they are stored: a value Postgres would refuse must
never reach the config that the next restart reads. Pure functions; the catalog is read once
from the running instance."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CATALOG_QUERY = "SELECT name, vartype, COALESCE(unit, ''), min_val, max_val, enumvals FROM pg_settings"

_BOOL = {"on", "off", "true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"}
_MEMORY = {"B", "kB", "MB", "GB", "TB"}
_TIME = {"us", "ms", "s", "min", "h", "d"}
_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


@dataclass(frozen=True)
class Setting:
    name: str
    vartype: str  # bool | integer | real | enum | string
    unit: str = ""  # e.g. kB, 8kB, ms, s, min
    min_val: float | None = None
    max_val: float | None = None
    enumvals: tuple[str, ...] = ()


def catalog(rows: list[tuple[Any, ...]]) -> dict[str, Setting]:
    def num(v: Any) -> float | None:
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None

    return {str(r[0]).lower(): Setting(str(r[0]), str(r[1]), str(r[2]), num(r[3]), num(r[4]),
                                       tuple(str(x).lower() for x in (r[5] or ())))
            for r in rows}


def _unit_kind(unit: str) -> set[str]:
    if unit.lstrip("0123456789") in _MEMORY:
        return _MEMORY
    if unit in _TIME:
        return _TIME
    return set()


def _numeric(s: Setting, value: Any) -> str | None:
    if isinstance(value, bool):
        return f"{s.name}: expects a number, not {value!r}"
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        m = _NUMBER.fullmatch(str(value))
        if m is None:
            return f"{s.name}: {value!r} is not a number"
        number, unit = float(m.group(1)), m.group(2)
    if unit:
        if unit not in _unit_kind(s.unit):
            allowed = ", ".join(sorted(_unit_kind(s.unit))) or "none"
            return f"{s.name}: unit {unit!r} is not valid here (units: {allowed})"
        return None  # Postgres converts and range-checks; the unit is right
    if s.vartype == "integer" and number != int(number):
        return f"{s.name}: expects a whole number, not {value!r}"
    if (s.min_val is not None and number < s.min_val) or (s.max_val is not None and number > s.max_val):
        return f"{s.name}: {value!r} is outside {s.min_val:g}..{s.max_val:g}"
    return None


def problem(s: Setting, value: Any) -> str | None:
    """Why Postgres would refuse ``value`` for ``s``, or None."""
    text = ("on" if value else "off") if isinstance(value, bool) else str(value)
    if s.vartype == "bool":
        return None if text.strip().lower() in _BOOL else f"{s.name}: {value!r} is not a boolean"
    if s.vartype in ("integer", "real"):
        return _numeric(s, value)
    if s.vartype == "enum" and s.enumvals and text.strip().lower() not in s.enumvals:
        return f"{s.name}: {value!r} is not one of {', '.join(s.enumvals)}"
    return None


def problems(params: Mapping[str, Any], known: Mapping[str, Setting] | None) -> list[str]:
    """Every value Postgres would refuse; nothing when the catalog is not known yet."""
    if not known:
        return []
    out = []
    for name, value in params.items():
        s = known.get(name.lower())
        if s is None:
            if "." not in name:  # class.name is an extension's, which may load later
                out.append(f"{name}: unknown parameter")
            continue
        reason = problem(s, value)
        if reason is not None:
            out.append(reason)
    return out
