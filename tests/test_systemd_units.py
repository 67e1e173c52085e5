"""configs/systemd: the units a host installs, checked by systemd's own parser (systemd does not
run as PID 1 on this test machine, so the units are verified, not started: see docs/deployment.md)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[1] / "configs" / "systemd"
PGHA = str(Path(sys.executable).with_name("pgha"))


def _service(name: str) -> dict[str, str]:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str  # type: ignore[assignment,method-assign]
    p.read_string((UNITS / name).read_text())
    return {**p["Unit"], **p["Service"], **p["Install"]}


@pytest.mark.parametrize("name", ["pgha.service", "pgha@.service", "pgha-pooler.service"])
def test_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: ./dev installs the systemd package")
    text = (UNITS / name).read_text().replace("/usr/local/bin/pgha", PGHA)
    target = tmp_path / (name.replace("@.", "@demo.") if "@." in name else name)
    target.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and target.name not in out.stderr, out.stderr


@pytest.mark.parametrize("name", ["pgha.service", "pgha@.service"])
def test_agent_unit_keeps_postgres_across_agent_restarts_and_allows_a_clean_hand_over(name: str) -> None:
    s = _service(name)
    assert s["KillMode"] == "process"  # only the agent is signalled: Postgres and the fence live on
    assert s["Restart"] == "on-failure"
    assert int(s["TimeoutStopSec"]) >= 60  # a primary's clean stop hands over first
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"  # re-reads the config (tags, log)
    assert int(s["LimitNOFILE"]) >= 65536
    assert "network-online.target" in s["After"] and "network-online.target" in s["Wants"]
    assert s["WantedBy"] == "multi-user.target"
    assert "--validate-config" in s["ExecStartPre"]  # a broken file fails the start, with its error


def test_the_example_node_config_validates_as_the_unit_checks_it() -> None:
    out = subprocess.run([PGHA, "agent", "-c", str(UNITS.parents[0] / "node1.yml"), "--validate-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "valid" in out.stdout, out.stderr
