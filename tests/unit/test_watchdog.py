"""The watchdog section and device: opened with ttl minus the safety margin when the node is about
to take writes, petted only on lease renewals, stopped with the magic character on disarm, and a
``required`` watchdog that cannot be used refuses leadership.

The device calls are recorded by a stand-in for ``fcntl.ioctl`` on an ordinary file (this machine
has no watchdog driver); ``test_softdog_device_is_activated_and_stopped`` uses the real softdog
module where the kernel offers it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pgha import errors as e
from pgha.agent import watchdog as wd
from pgha.agent.fence import Fence
from pgha.config import load_local_config
from pgha.config.fence import WatchdogConfig
from pgha.config.model import DynamicConfig, Tags
from pgha.core import actions as a
from pgha.core.cluster import ClusterView, LeaderStatus, Member
from pgha.core.decide import decide
from pgha.core.snapshot import PgState, Snapshot
from tests.unit.test_config import GOOD, write

CFG = DynamicConfig(ttl=30, loop_wait=10, retry_timeout=10)


class Device:
    """Records what the agent does to the watchdog device."""

    def __init__(self, path: Path, max_timeout: int = 600) -> None:
        self.path, self.max_timeout = path, max_timeout
        self.timeout = 0
        self.stuck_at: int | None = None  # a driver that ignores the timeout it is given
        self.calls: list[str] = []

    def ioctl(self, fd: int, request: int, buf: Any, mutate: bool = False) -> int:
        if request == wd.WDIOC_SETTIMEOUT:
            self.timeout = self.stuck_at or min(buf[0], self.max_timeout)
            self.calls.append(f"settimeout {buf[0]}")
        elif request == wd.WDIOC_GETTIMEOUT:
            buf[0] = self.timeout
        elif request == wd.WDIOC_KEEPALIVE:
            self.calls.append("keepalive")
        return 0


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    dev = Device(tmp_path / "watchdog")
    dev.path.write_bytes(b"")
    monkeypatch.setattr(wd.fcntl, "ioctl", dev.ioctl)
    return dev


def test_watchdog_section_is_validated_and_names_the_key(tmp_path: Path) -> None:
    cfg = load_local_config(write(tmp_path, GOOD + "watchdog: {mode: required, device: /dev/wd1, safety_margin: -1}\n"),
                            environ={})
    assert cfg.watchdog == WatchdogConfig(mode="required", device="/dev/wd1", safety_margin=-1)
    assert load_local_config(write(tmp_path, GOOD + "watchdog: {mode: off}\n"), environ={}).watchdog.mode == "off"
    for text, needle in (("watchdog: {mode: always}", "watchdog.mode"), ("watchdog: {devise: /dev/x}", "watchdog.devise"),
                         ("watchdog: {safety_margin: -3}", "watchdog.safety_margin")):
        with pytest.raises(e.ConfigError, match=needle):
            load_local_config(write(tmp_path, GOOD + text + "\n"), environ={})


def test_timeout_leaves_the_safety_margin_before_the_lease_can_expire() -> None:
    assert wd.timeout_for(30, 5) == 25
    assert wd.timeout_for(30, -1) == 15
    assert wd.timeout_for(5, 10) == 1


def test_fence_opens_the_watchdog_pets_it_on_renewals_only_and_stops_it_on_disarm(
        device: Device, tmp_path: Path) -> None:
    watchdog = wd.Watchdog(WatchdogConfig(mode="automatic", device=str(device.path)))
    fence = Fence(str(tmp_path / "data"), watchdog)
    writable = PgState(data_dir_empty=False, running=True, in_recovery=False)
    snap = Snapshot(now=time.monotonic(), name="n1", tags=Tags(), config=CFG, cluster=ClusterView(),
                    dcs_ok=True, pg=writable)
    try:
        assert fence.follow(snap, (), time.monotonic() + 30)
        assert watchdog.active and device.calls == ["settimeout 25", "keepalive"]
        assert fence.watchdog_state == "active (25 s)"
        fence.follow(snap, (), time.monotonic() + 30)  # a loop without a renewal does not pet
        assert device.calls.count("keepalive") == 1
        fence.extend(time.monotonic() + 30, CFG)  # a renewal does
        assert device.calls.count("keepalive") == 2
        fence.extend(time.monotonic() + 5, DynamicConfig(ttl=20, loop_wait=4, retry_timeout=8))  # a ttl change moves the timeout
        assert device.calls[-2:] == ["settimeout 15", "keepalive"]
        fence.follow(replace(snap, pg=replace(writable, in_recovery=True)), (), time.monotonic() + 30)
        assert not watchdog.active and device.path.read_bytes() == b"V"  # the magic close
    finally:
        fence.disarm("test over")


def test_a_device_that_cannot_honour_the_timeout_is_refused(device: Device) -> None:
    device.stuck_at = 60
    required = wd.Watchdog(WatchdogConfig(mode="required", device=str(device.path)))
    assert required.activate(30) is False and "longer than the 25 s needed" in (required.problem or "")
    assert required.required_but_unusable is not None
    automatic = wd.Watchdog(WatchdogConfig(mode="automatic", device=str(device.path)))
    assert automatic.activate(30) is True and not automatic.active  # carries on with the fence alone


def test_required_watchdog_without_a_device_refuses_leadership(tmp_path: Path) -> None:
    missing = wd.Watchdog(WatchdogConfig(mode="required", device=str(tmp_path / "nope")))
    assert "does not exist" in (missing.required_but_unusable or "")
    assert wd.Watchdog(WatchdogConfig(mode="automatic", device=str(tmp_path / "nope"))).required_but_unusable is None
    problem = Fence(str(tmp_path / "data"), missing).problem
    assert problem is not None and "watchdog required but unusable" in problem
    replica = PgState(data_dir_empty=False, sysid="42", running=True, in_recovery=True, timeline=3, lsn=5000,
                      replayed_lsn=5000, following="n1")
    no_leader = ClusterView(initialize="42", config=CFG, members={"n2": Member("n2", role="replica", state="running")},
                            status=LeaderStatus("n1", 3, 5000))
    base = dict(now=100.0, name="n2", tags=Tags(), config=CFG, dcs_ok=True, lease_valid_until=130.0)
    refused = decide(Snapshot(cluster=no_leader, pg=replica, fence_problem=problem, **base))  # type: ignore[arg-type]
    assert refused.actions == () and "watchdog required but unusable" in refused.note
    allowed = decide(Snapshot(cluster=no_leader, pg=replica, **base))  # type: ignore[arg-type]
    assert [type(x) for x in allowed.actions] == [a.AcquireLeader]
    # nor does it bootstrap a new cluster
    fresh = decide(Snapshot(cluster=ClusterView(), pg=PgState(), fence_problem=problem, **base))  # type: ignore[arg-type]
    assert fresh.actions == () and "watchdog" in fresh.note


def _softdog() -> str | None:
    """A softdog device that cannot reboot this machine (soft_noboot=1), or why there is none."""
    if not Path("/dev/watchdog").exists():
        if shutil.which("modprobe") is None or not Path(f"/lib/modules/{os.uname().release}").exists():
            return None
        subprocess.run(["modprobe", "softdog", "soft_noboot=1"], check=False, capture_output=True)
    noboot = Path("/sys/module/softdog/parameters/soft_noboot")
    if Path("/dev/watchdog").exists() and noboot.exists() and noboot.read_text().strip() in ("1", "Y"):
        return "/dev/watchdog"
    return None


def test_softdog_device_is_activated_and_stopped() -> None:
    dev = _softdog()
    if dev is None:
        pytest.skip(f"no softdog: kernel {os.uname().release} offers no /dev/watchdog and no loadable softdog module")
    watchdog = wd.Watchdog(WatchdogConfig(mode="required", device=dev))
    assert watchdog.activate(30), watchdog.problem
    try:
        assert watchdog.timeout == 25
        watchdog.keepalive()
    finally:
        watchdog.disable()
    assert not watchdog.active
