"""A full disk under the agent's own files (a real tmpfs, filled): what it remembers survives,
its fence keeps guarding, and its lease keeper keeps renewing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha.agent.fence import Fence
from pgha.agent.lease import LeaseKeeper
from pgha.config.model import DynamicConfig
from pgha.postgres.memory import DiskState, Memory
from pgha.testing import wait_for


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(d: Path) -> Path:
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 4096):
            pass
    os.close(fd)
    return filler


def test_what_a_node_remembers_survives_a_full_disk_and_is_saved_once_space_is_back(disk: Path) -> None:
    memory = Memory(disk / "data.pgha.json")
    memory.remember(primary_on_timeline=3, following=None)
    filler = fill(disk)
    memory.remember(primary_on_timeline=4)  # a write the disk cannot take: the last copy stays whole
    assert Memory(disk / "data.pgha.json").state == DiskState(primary_on_timeline=3)
    assert memory.state.primary_on_timeline == 4 and memory.unsaved
    filler.unlink()
    memory.remember()  # the next look saves it, changed or not
    assert Memory(disk / "data.pgha.json").state == DiskState(primary_on_timeline=4) and not memory.unsaved


class _Etcd:
    """An etcd stand-in that renews and grants (the keeper's own logic is what is tested)."""

    def __init__(self) -> None:
        self.keepalives = 0

    async def lease_grant(self, ttl: int, deadline: float) -> int:
        return 7

    async def lease_keepalive(self, lease: int, deadline: float) -> int:
        self.keepalives += 1
        return 20


def test_the_lease_keeper_keeps_renewing_when_what_follows_a_renewal_fails() -> None:
    """Moving the fence's deadline after a renewal raised ENOSPC, which ended the keeper's task:
    the lease expired and was never granted again."""
    def full() -> None:
        raise OSError(28, "No space left on device")

    async def scenario() -> int:
        etcd = _Etcd()
        config = DynamicConfig(ttl=20, loop_wait=1, retry_timeout=4)
        keeper = LeaseKeeper(etcd, lambda: config, lambda: None, on_renewed=full)  # type: ignore[arg-type]
        task = asyncio.create_task(keeper.run(lambda: True))
        await asyncio.sleep(3.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert keeper.ok and keeper.lease == 7
        return keeper.renewals

    assert asyncio.run(scenario()) >= 3  # the grant and the renewals after it


def test_the_fence_keeps_its_earlier_deadline_when_the_disk_is_full(disk: Path) -> None:
    """Moving the deadline raised ENOSPC out of the HA loop, every loop: the agent did nothing else."""
    fence = Fence(str(disk / "data"))
    try:
        assert fence.arm(time.monotonic() + 60)
        wait_for("the fence process", fence.pid, 10)
        before = fence.state.read_text()
        filler = fill(disk)
        assert fence.arm(time.monotonic() + 120)  # guarded still: by the earlier deadline
        assert fence.state.read_text() == before and fence.deadline is not None
        assert fence.deadline < time.monotonic() + 61
        filler.unlink()
        assert fence.arm(time.monotonic() + 120) and fence.state.read_text() != before
    finally:
        pid = fence.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
