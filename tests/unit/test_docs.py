"""The docs cover what pgha has: every command, every REST path, every configuration key, and
every relative link in them leads somewhere."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pydantic
import pytest
from aiohttp import web

from pgha.cli.main import main as cli
from pgha.config.model import DynamicConfig, LocalConfig

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(p.read_text() for p in PAGES)


def _models(t: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(t, type) and issubclass(t, pydantic.BaseModel):
        return [t]
    if typing.get_origin(t) in (typing.Union, types.UnionType, list, dict, tuple, typing.Literal) or \
            typing.get_args(t):
        return [m for a in typing.get_args(t) for m in _models(a)]
    return []


def _keys(model: type[pydantic.BaseModel], seen: set[type[pydantic.BaseModel]]) -> set[str]:
    seen.add(model)
    out = set()
    for name, field in model.model_fields.items():
        out.add(field.alias or name)
        for sub in _models(field.annotation):
            if sub not in seen:
                out |= _keys(sub, seen)
    return out


def test_every_command_is_in_the_docs() -> None:
    import click

    ctx = click.Context(cli)
    missing = [c for c in cli.list_commands(ctx) if f"pgha {c}" not in TEXT]
    assert not missing, missing


def test_every_rest_path_is_in_the_docs() -> None:
    from pgha.api import failsafe, manage, rollout, ui, views
    from pgha.api.health import HEALTH_PATHS

    paths = {*HEALTH_PATHS, "/metrics"} - {"/"}
    for routes in (views.ROUTES, manage.ROUTES, rollout.ROUTES, failsafe.ROUTES, ui.ROUTES):
        paths |= {r.path for r in routes if isinstance(r, web.RouteDef)}
    assert len(paths) > 20
    missing = sorted(p for p in paths if not re.search(rf"[`\s]{re.escape(p)}(?![\w-])", TEXT))
    assert not missing, missing


@pytest.mark.parametrize("model", [LocalConfig, DynamicConfig])
def test_every_configuration_key_is_in_the_docs(model: type[pydantic.BaseModel]) -> None:
    missing = sorted(k for k in _keys(model, set()) if f"`{k}" not in TEXT and f".{k}" not in TEXT
                     and f"{k}:" not in TEXT)
    assert not missing, missing


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
