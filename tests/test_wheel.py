"""pgha as a host installs it: a wheel and an sdist built with ``python -m build``, the wheel
installed into a fresh venv outside the checkout (no test dependencies), and a node of a real
cluster run from that venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import pgha
from pgha.testing import LocalCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).parents[1]


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=400, cwd=cwd)
    assert out.returncode == 0, f"{argv}: {out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path]]:
    """(the dist folder, the fresh venv's bin folder)."""
    base = Path(tempfile.mkdtemp(prefix="pgha-wheel-"))
    src = base / "src"  # a copy: the build's own folders stay out of the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                                          ".local-cluster", ".mypy_cache", ".pytest_cache", ".hypothesis"))
    try:
        _run(sys.executable, "-m", "build", "--outdir", base / "dist", src)
        _run(Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", base / "venv")  # not the test venv's
        wheel = next((base / "dist").glob("pgha-*.whl"))
        _run(base / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=base)
        yield base / "dist", base / "venv" / "bin"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_wheel_and_sdist_carry_the_fence_the_ui_and_the_type_marker(installed: tuple[Path, Path]) -> None:
    dist, _ = installed
    version = pgha.__version__
    wheel = dist / f"pgha-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("pgha/py.typed", "pgha/fence/__main__.py", "pgha/api/ui.py", "pgha/agent/reload.py",
                 f"pgha-{version}.dist-info/entry_points.txt"):
        assert path in names, path
    assert (dist / f"pgha-{version}.tar.gz").exists()


def test_installed_pgha_runs_outside_the_checkout_without_test_dependencies(installed: tuple[Path, Path]) -> None:
    _, bin_dir = installed
    assert _run(bin_dir / "pgha", "--version", cwd=bin_dir).strip().endswith(pgha.__version__)
    out = _run(bin_dir / "pgha", "agent", "-c", ROOT / "configs" / "node1.yml", "--validate-config", cwd=bin_dir)
    assert "valid" in out
    where = _run(bin_dir / "python", "-c", "import pgha, importlib.util as u; "
                 "print(pgha.__file__, u.find_spec('pytest'), u.find_spec('hypothesis'))", cwd=bin_dir)
    assert str(bin_dir.parent) in where and where.split()[1:] == ["None", "None"], where


def test_a_node_of_a_real_cluster_runs_from_the_installed_venv(installed: tuple[Path, Path]) -> None:
    _, bin_dir = installed
    base = Path(tempfile.mkdtemp(prefix="pgha-test-"))  # not pytest's tmp_path: Postgres runs as postgres
    c = LocalCluster(base, nodes=1)
    c.nodes[0].command = [str(bin_dir / "pgha")]
    try:
        c.start()
        n = c.leader()
        wait_for("the node writable", lambda: n.health("/primary") == 200 or None, 30)
        fence = n.fence_pid()
        assert fence is not None
        cmdline = Path(f"/proc/{fence}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode().startswith(str(bin_dir.parent)), cmdline  # the venv's python runs the fence
        agent = Path(f"/proc/{n.proc.pid}/cmdline").read_bytes() if n.proc is not None else b""
        assert str(bin_dir / "pgha").encode() in agent
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)
