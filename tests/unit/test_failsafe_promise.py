"""The failsafe promise outlives an agent restart, and only within one boot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pgha.agent.promise import Promise
from pgha.ops import Inbox


def test_a_confirmation_given_by_an_earlier_run_is_found_again(tmp_path: Path) -> None:
    path = tmp_path / "data.failsafe-promise"
    at = time.monotonic() - 1.5
    first = Inbox(keep_ping=Promise(path).save)
    first.failsafe_asked("n1", at)
    again = Inbox(failsafe_ping=Promise(path).load())
    assert again.failsafe_ping == ("n1", at)


def test_a_promise_from_another_boot_or_from_the_future_is_void(tmp_path: Path) -> None:
    path = tmp_path / "data.failsafe-promise"
    promise = Promise(path)
    promise.save("n1", time.monotonic())
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "boot_id": "another boot"}))
    assert Promise(path).load() is None
    path.write_text(json.dumps({**data, "at": time.monotonic() + 60}))
    assert Promise(path).load() is None


def test_no_file_or_a_torn_one_means_no_promise(tmp_path: Path) -> None:
    path = tmp_path / "data.failsafe-promise"
    assert Promise(path).load() is None
    path.write_text('{"primary": "n1", "at": ')
    assert Promise(path).load() is None


def test_a_promise_that_cannot_be_written_is_logged_not_raised(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "missing-dir" / "data.failsafe-promise"
    Promise(path).save("n1", time.monotonic())
    assert f"could not record the failsafe confirmation given to n1 in {path}" in caplog.text
    assert not path.exists()
