"""Read a node's YAML file, apply ``PGHA_*`` environment overrides, and validate.

Errors name the file, the key and the offending value, and nothing is started or written when a
file is invalid.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pgha import errors as e
from pgha.config import patroni
from pgha.config.model import MAX_DYNAMIC_CONFIG, DynamicConfig, LocalConfig

ENV_PREFIX = "PGHA_"

log = logging.getLogger(__name__)
MAX_FILE = 1 << 20  # bytes; a node's config is a few KiB
MAX_ALIASES = 100  # YAML aliases
MAX_VALUES = 100_000  # values after expanding aliases; "billion laughs" files expand to billions


def _expanded(data: Any, memo: dict[int, int]) -> int:
    """How many values ``data`` holds once every alias is expanded (shared parts counted once
    each time they are referenced, computed once each)."""
    key = id(data)
    if key in memo:
        return memo[key]
    if isinstance(data, dict):
        n = 1 + sum(_expanded(k, memo) + _expanded(v, memo) for k, v in data.items())
    elif isinstance(data, list):
        n = 1 + sum(_expanded(v, memo) for v in data)
    else:
        n = 1
    memo[key] = n
    return n


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and alias bombs."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.YAMLError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_text(path: str | os.PathLike[str], source: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise e.ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_FILE:
        raise e.ConfigError(f"{source}: larger than {MAX_FILE >> 20} MiB: not a pgha config")
    if b"\0" in raw:
        raise e.ConfigError(f"{source}: binary data (NUL bytes): not a YAML file")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise e.ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from exc


def parse_yaml(text: str, source: str) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        if _expanded(data, {}) > MAX_VALUES:
            raise e.ConfigError(f"{source}: expands to more than {MAX_VALUES} values (YAML aliases?)")
        return data
    except yaml.YAMLError as exc:
        raise e.ConfigError(f"{source}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise e.ConfigError(f"{source}: nested too deeply") from exc


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
        shown = "" if value is _MISSING else f" (value: {_short(value)})"
        lines.append(f"{source}: {loc}: {reason}{shown}")
    return "\n".join(lines)


_MISSING = object()


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 80, 80, 6, 6, 3


def _short(value: Any) -> str:
    text = _REPR.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return _MISSING
    if isinstance(data, Mapping) and len(_short(data)) > 80:
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
        if path is None and _names_a_section(words):
            raise e.ConfigError(f"environment: {var}: names no configuration key")
        if path is None:
            # PGHA_VENV and the like belong to wrapper scripts, not to pgha: a warning, not a stop
            log.warning("environment: %s names no pgha setting: ignored", var)
            continue
        out.append((path, yaml.safe_load(raw) if raw != "" else None))
    return out


def _names_a_section(words: list[str]) -> bool:
    """Whether ``words`` start with a section of the file (``postgresql``, ``etcd``, ``tags``...),
    so that a variable which names no key in it is a typo to report."""
    for n in range(1, len(words)):
        field = LocalConfig.model_fields.get("_".join(words[:n]))
        if field is None:
            continue
        sub = field.annotation if isinstance(field.annotation, type) else None
        if (sub is not None and issubclass(sub, BaseModel)) or _is_mapping(field.annotation):
            return True
    return False


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


def _from_patroni(data: dict[str, Any], source: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """A Patroni config (with Patroni's environment variables over it) in pgha's layout."""
    env = patroni.environment(environ)
    if not patroni.is_patroni(data):
        if env:
            log.warning("%s is a pgha config: Patroni's PATRONI_* variables are ignored", source)
        return data
    native, notes = patroni.convert(patroni.merge(data, env), source)
    for note in notes:
        log.info("%s: Patroni config: %s", source, note)
    return native


def load_local_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> LocalConfig:
    source = str(path)
    data = parse_yaml(read_text(path, source), source) or {}
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    environ = os.environ if environ is None else environ
    data = _from_patroni(data, source, environ)
    for key_path, value in _env_overrides(environ):
        _set(data, key_path, value)
        source_note = f"{source} (with PGHA_* environment overrides)"
        source = source_note
    try:
        return LocalConfig.model_validate(data)
    except ValidationError as exc:
        raise e.ConfigError(describe(exc, source, data)) from exc


def normalized(data: Any, source: str) -> dict[str, Any]:
    """The dynamic config as it will be stored: the validated values (never the raw input), only
    the keys that were given, within the size limit."""
    model = parse_dynamic_config(data, source)
    out: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    size = len(json.dumps(out))
    if size > MAX_DYNAMIC_CONFIG:
        raise e.ConfigTooLarge(f"{source}: {size} bytes of JSON, more than the {MAX_DYNAMIC_CONFIG} allowed")
    return out


def parse_dynamic_config(data: Any, source: str = "dynamic config") -> DynamicConfig:
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: must be a mapping, not {type(data).__name__}")
    try:
        return DynamicConfig.model_validate(data)
    except ValidationError as exc:
        raise e.ConfigError(describe(exc, source, data)) from exc


def parse_stored_config(data: Any, source: str = "config in etcd") -> tuple[DynamicConfig, str]:
    """The cluster's config as etcd stores it, read so that one bad key costs only that key:
    keys this version does not know (set by a newer pgha during a rolling upgrade, or written by
    hand) are left out and named in the returned warning (empty: none). Anything else wrong (a
    value of the wrong type) raises ConfigError naming the key: the caller keeps its last valid
    settings rather than fall back to ``bootstrap.dcs``."""
    if not isinstance(data, dict):
        raise e.ConfigError(f"{source}: must be a mapping, not {type(data).__name__}")
    try:
        return DynamicConfig.model_validate(data), ""
    except ValidationError as exc:
        errors = exc.errors()
        if any(item["type"] != "extra_forbidden" for item in errors):
            raise e.ConfigError(describe(exc, source, data)) from exc
        unknown = [tuple(item["loc"]) for item in errors]
    pruned = _without(data, unknown)
    names = ", ".join(sorted(".".join(str(p) for p in loc) for loc in unknown))
    return parse_dynamic_config(pruned, source), f"{source}: unknown key(s) {names}: ignored"


def _without(data: Any, paths: list[tuple[Any, ...]]) -> Any:
    """A copy of ``data`` without the keys at ``paths``."""
    if not isinstance(data, dict):
        return data
    here = {p[0] for p in paths if len(p) == 1}
    return {k: _without(v, [p[1:] for p in paths if len(p) > 1 and p[0] == k])
            for k, v in data.items() if k not in here}
