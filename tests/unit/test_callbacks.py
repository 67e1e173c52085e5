"""Callbacks run as Patroni runs them, in the background: arguments, timeouts, failures, and a
newer role change superseding an older one. Real scripts, real processes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pgha.agent.callbacks import CallbackRunner
from pgha.config.model import Callbacks

REPO = Path(__file__).parents[2]


def script(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_callback_gets_action_role_and_scope_after_its_own_arguments(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    s = script(tmp_path, "cb.sh", f'echo "$@" >> {out}\n')

    async def run() -> CallbackRunner:
        r = CallbackRunner(Callbacks(on_start=f"{s} --flag 'two words'", on_reload=s), "demo")
        r.fire("on_start", "replica")
        r.fire("on_reload", "primary")
        r.fire("on_stop", "primary")  # not configured: nothing runs
        await r.close()
        return r

    r = asyncio.run(run())
    assert sorted(out.read_text().splitlines()) == ["--flag two words on_start replica demo", "on_reload primary demo"]
    assert r.stats.snapshot()["on_start"][:2] == (1, 0) and "on_stop" not in r.stats.runs


def test_hanging_callback_is_killed_at_its_timeout_and_fire_never_waits(tmp_path: Path) -> None:
    s = script(tmp_path, "hang.sh", "sleep 60\n")

    async def run() -> tuple[float, CallbackRunner]:
        r = CallbackRunner(Callbacks(on_role_change=s, timeout=0.5), "demo")
        t0 = time.monotonic()
        r.fire("on_role_change", "primary")
        fired = time.monotonic() - t0
        await r.close()
        return fired, r

    fired, r = asyncio.run(run())
    assert fired < 0.05  # the loop went on at once
    runs, failures, seconds = r.stats.snapshot()["on_role_change"]
    assert (runs, failures) == (1, 1) and 0.5 <= seconds < 5


def test_failing_and_missing_scripts_are_counted_as_failures(tmp_path: Path) -> None:
    bad = script(tmp_path, "bad.sh", "exit 3\n")

    async def run() -> CallbackRunner:
        r = CallbackRunner(Callbacks(on_stop=bad, on_start=str(tmp_path / "absent.sh")), "demo")
        r.fire("on_stop", "primary")
        r.fire("on_start", "primary")
        await r.close()
        return r

    stats = asyncio.run(run()).stats.snapshot()
    assert stats["on_stop"][:2] == (1, 1) and stats["on_start"][:2] == (1, 1)


def test_newer_role_change_kills_the_older_one_still_running(tmp_path: Path) -> None:
    out = tmp_path / "calls"
    s = script(tmp_path, "slow.sh", f'[ "$2" = primary ] && sleep 30\necho "$2" >> {out}\n')

    async def run() -> None:
        r = CallbackRunner(Callbacks(on_role_change=s), "demo")
        r.fire("on_role_change", "primary")
        await asyncio.sleep(0.2)
        r.fire("on_role_change", "replica")
        await r.close()

    t0 = time.monotonic()
    asyncio.run(run())
    assert out.read_text().split() == ["replica"] and time.monotonic() - t0 < 10


def test_webhook_example_posts_the_role_change_as_json(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"

    async def run() -> CallbackRunner:
        r = CallbackRunner(Callbacks(on_role_change=f"{REPO}/configs/callbacks/webhook.sh {url}"), "demo")
        r.fire("on_role_change", "primary")
        await r.close()
        return r

    try:
        r = asyncio.run(run())
    finally:
        server.server_close()
    assert r.stats.snapshot()["on_role_change"][:2] == (1, 0)
    assert got and got[0]["action"] == "on_role_change" and got[0]["role"] == "primary" and got[0]["scope"] == "demo"
    assert "is now primary" in got[0]["text"]


@pytest.mark.parametrize(("action", "role", "up"), [
    ("on_start", "primary", True), ("on_role_change", "primary", True), ("on_restart", "master", True),
    ("on_role_change", "replica", False), ("on_stop", "primary", False), ("on_start", "replica", False)])
def test_vip_script_decides_up_or_down_from_action_and_role(tmp_path: Path, action: str, role: str, up: bool) -> None:
    # ``ip`` replaced by a recorder: the script's decision, without touching any interface
    calls = tmp_path / "ip-calls"
    script(tmp_path, "ip", f'echo "$@" >> {calls}\n[ "$1 $2" = "-o addr" ] && echo "2: eth9 inet 10.9.9.9/24" ; true\n')
    import subprocess

    done = subprocess.run([f"{REPO}/configs/callbacks/vip.sh", "10.9.9.9/24", "eth9", action, role, "demo"],
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    text = calls.read_text()
    if up:
        assert "vip 10.9.9.9/24 up" in done.stdout and "addr add" not in text  # already there: not added twice
    else:
        assert "vip 10.9.9.9/24 down" in done.stdout and "addr del 10.9.9.9/24 dev eth9" in text
