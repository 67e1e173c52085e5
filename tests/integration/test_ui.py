"""The live status page, in a real headless Chromium: it draws the cluster from a replica's
agent, and after the primary node is killed it shows the new leader within 2 s of ``/primary``
moving. The screenshot is kept as a test artifact (``$PGHA_ARTIFACTS``, default: the test's
temporary directory)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pgha.testing import LocalCluster, http_request
from tests.browser import CHROMIUM, Browser

pytestmark = pytest.mark.slow

LEADER = "document.getElementById('leader').textContent"
ROWS = "document.querySelectorAll('#members tr').length"


async def until(what: str, check: Callable[[], object], timeout: float) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (./dev installs it)")
def test_status_page_shows_the_new_leader_within_2s_of_primary_moving(
        make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    c = make_cluster()
    c.start()
    old = c.leader()
    viewer = next(n for n in c.nodes if n is not old)
    status, body, _ = http_request("GET", viewer.api + "/ui", timeout=2)
    assert status == 200 and "<script>" in str(body) and "http" not in str(body).split("<script>")[1].split("fetch")[0]
    artifacts = Path(os.environ.get("PGHA_ARTIFACTS") or tmp_path)

    async def scenario() -> tuple[float, float, str]:
        async with Browser() as browser:
            await browser.open(viewer.api + "/ui")
            await until("the page showing the leader", lambda: browser.js(f"{LEADER} === '{old.name}' && {ROWS} === 3"), 15)
            await until("the page refreshing", lambda: browser.js(
                "document.getElementById('updated').textContent !== 'never'"), 5)
            old.signal_agent(signal.SIGKILL)
            old.kill_postgres(signal.SIGKILL)
            others = [n for n in c.nodes if n is not old]

            async def moved() -> bool:
                return 200 in await asyncio.gather(*(asyncio.to_thread(n.health, "/primary") for n in others))

            async def shown() -> bool:
                return bool(await browser.js(f"{LEADER} !== '{old.name}' && {LEADER} !== 'none'"))

            t_page_task = asyncio.create_task(until("the page showing a new leader", shown, 60))
            t_primary = await until("/primary answering on another node", moved, 60)
            t_page = await t_page_task
            await asyncio.sleep(2.5)  # one timeline refresh, for the screenshot
            shot = await browser.screenshot(artifacts / "ui.png")
            return t_page - t_primary, t_page, str(shot)

    lag, _, shot = asyncio.run(scenario())
    print(f"status page: new leader shown {lag:+.2f} s after /primary moved; screenshot {shot}")
    assert lag <= 2.0, f"the page showed the new leader {lag:.2f} s after /primary moved"
    assert Path(shot).stat().st_size > 10_000
