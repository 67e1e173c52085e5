"""The layout's promises, checked from the source: the decision core depends on nothing but
itself and the standard library; the API and the CLI never reach into the agent; modules and
functions stay small enough to read."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pgha"
STDLIB = set(sys.stdlib_module_names)


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("pgha.core")))
def test_core_imports_only_itself_and_the_standard_library(module: str) -> None:
    bad = sorted(i for i in imports(modules()[module])
                 if not (i.startswith("pgha.core") or (_top(i) in STDLIB and _top(i) != "pgha")))
    bad = [i for i in bad if not any(i.startswith(b + ".") for b in bad)]
    assert not bad, f"{module} imports {bad}: the decision core must stay pure"


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith("pgha.core")))
def test_core_does_no_io(module: str) -> None:
    found = {_top(i) for i in imports(modules()[module])}
    assert not found & {"asyncio", "aiohttp", "psycopg", "socket", "subprocess", "time"}, module


@pytest.mark.parametrize("module", sorted(m for m in modules() if m.startswith(("pgha.api", "pgha.cli"))))
def test_api_and_cli_never_import_the_agent(module: str) -> None:
    assert not [i for i in imports(modules()[module]) if i == "pgha.agent" or i.startswith("pgha.agent.")], module


def test_the_agent_does_not_import_the_test_harness() -> None:
    for module, path in modules().items():
        if not module.startswith("pgha.testing"):
            assert not [i for i in imports(path) if i.startswith("pgha.testing")], module


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_and_functions_stay_small(module: str) -> None:
    path = modules()[module]
    text = path.read_text()
    assert text.count("\n") <= 400, f"{module} has {text.count(chr(10))} lines (at most 400)"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 50, f"{module}:{node.name} has {length} lines (at most 50)"


def test_the_loop_stays_thin() -> None:
    assert (PACKAGE / "agent" / "loop.py").read_text().count("\n") < 150
