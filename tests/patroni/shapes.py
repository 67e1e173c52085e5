"""Compare a pgha REST body with a reference body recorded from Patroni: every key Patroni has,
pgha has too, with a value of the same JSON type. pgha may add keys."""

from __future__ import annotations

import re
from typing import Any

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ", re.MULTILINE)


def metric_shapes(text: str) -> dict[str, list[str]]:
    """Each metric name in a Prometheus text body, with the label names it carries."""
    out: dict[str, set[str]] = {}
    for name, labels in _SAMPLE.findall(text):
        keys = {kv.split("=", 1)[0].strip() for kv in labels.split(",") if "=" in kv}
        out.setdefault(name, set()).update(keys)
    return {k: sorted(v) for k, v in sorted(out.items())}


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


# Keys that Patroni itself sends as null at times: pg_last_xact_replay_timestamp() is null until
# a standby replays its first transaction after it starts.
NULLABLE = {"replayed_timestamp"}


def differences(ref: Any, ours: Any, at: str = "") -> list[str]:
    """What a tool reading ``ref``'s keys and types would miss or misread in ``ours``."""
    if ref is None or (ours is None and at.rsplit(".", 1)[-1] in NULLABLE):
        return []
    if kind(ref) != kind(ours):
        return [f"{at or '.'}: Patroni has {kind(ref)} {ref!r}, pgha {kind(ours)} {ours!r}"]
    if isinstance(ref, dict):
        out = []
        for key, value in ref.items():
            if key not in ours:
                out.append(f"{at}.{key}: missing (Patroni has {value!r})")
            else:
                out.extend(differences(value, ours[key], f"{at}.{key}"))
        return out
    if isinstance(ref, list) and ref:
        if not ours:
            return [f"{at}: empty, Patroni has {len(ref)} entries"]
        if all(isinstance(x, dict) for x in ref):  # records: each of ours against Patroni's first
            return [d for item in ours for d in differences(ref[0], item, f"{at}[]")]
        if all(isinstance(x, list) for x in ref):  # rows (/history): each of ours against the first
            return [d for row in ours for d in differences(ref[0], row, f"{at}[]")]
        if len(ours) < len(ref):
            return [f"{at}: {len(ours)} fields, Patroni has {len(ref)}"]
        return [d for i, v in enumerate(ref) for d in differences(v, ours[i], f"{at}[{i}]")]
    return []


def member_differences(ref: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """``/cluster``: each Patroni member compared with pgha's member of the same role."""
    out = differences({k: v for k, v in ref.items() if k != "members"}, ours)
    by_role = {m["role"]: m for m in ours.get("members", [])}
    for m in ref["members"]:
        if m["role"] not in by_role:
            out.append(f".members: no {m['role']} (pgha has {sorted(by_role)})")
        else:
            out.extend(differences(m, by_role[m["role"]], f".members[{m['role']}]"))
    return out
