"""Read a node's YAML file, apply ``PGHA_*`` environment overrides, and validate.

Errors name the file, the key and the offending value, and nothing is started or written when a
file is invalid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pgha import errors as e
from pgha.config.model import DynamicConfig, LocalConfig

ENV_PREFIX = "PGHA_"


def describe(err: ValidationError, source: str, data: Any) -> str:
    """One line per problem: ``node.yml: postgresql.data_dirr: unknown key (value: '/x')``."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            reason = "unknown key"
        elif item["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = item["msg"].removeprefix("Value error, ")
        value = _lookup(data, item["loc"])
        shown = "" if value is _MISSING else f" (value: {value!r})"
        lines.append(f"{source}: {loc}: {reason}{shown}")
    return "\n".join(lines)


_MISSING = object()


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return _MISSING
    if isinstance(data, Mapping) and len(str(data)) > 80:
        return _MISSING
    return data


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    """Map ``PGHA_POSTGRESQL_DATA_DIR=/x`` to (["postgresql", "data_dir"], "/x") by walking the
    model, since keys themselves contain underscores."""
    out = []
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        words = var[len(ENV_PREFIX) :].lower().split("_")
        path = _resolve(LocalConfig, words)
        if path is None:
            raise e.ConfigError(f"environment: {var}: names no configuration key")
        out.append((path, yaml.safe_load(raw) if raw != "" else None))
    return out


def _resolve(model: type[BaseModel] | None, words: list[str]) -> list[str] | None:
    if not words:
        return []
    if model is None:
        # a free-form mapping (parameters, tags): the rest is one key
        return ["_".join(words)]
    for n in range(len(words), 0, -1):
        key = "_".join(words[:n])
        field = model.model_fields.get(key)
        if field is None:
            continue
        sub = field.annotation if isinstance(field.annotation, type) else None
        sub_model = sub if sub is not None and issubclass(sub, BaseModel) else None
        if n < len(words) and sub_model is None and not _is_mapping(field.annotation):
            continue
        rest = _resolve(sub_model, words[n:])
        if rest is not None:
            return [key, *rest]
    if model.model_config.get("extra") == "allow":
        return ["_".join(words)]
    return None


def _is_mapping(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


def _set(data: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        nxt = data.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            data[key] = nxt
        data = nxt
    data[path[-1]] = value


def load_local_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> LocalConfig:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise e.ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise e.ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    for key_path, value in _env_overrides(os.environ if environ is None else environ):
        _set(data, key_path, value)
        source_note = f"{source} (with PGHA_* environment overrides)"
        source = source_note
    try:
        return LocalConfig.model_validate(data)
    except ValidationError as exc:
        raise e.ConfigError(describe(exc, source, data)) from exc


def parse_dynamic_config(data: Any, source: str = "dynamic config") -> DynamicConfig:
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: must be a mapping, not {type(data).__name__}")
    try:
        return DynamicConfig.model_validate(data)
    except ValidationError as exc:
        raise e.ConfigError(describe(exc, source, data)) from exc
