"""The config stored in etcd is read so that one bad key costs only that key: an unknown key
(a newer pgha's, or a typo written with etcdctl) is ignored and named; a value of the wrong type
keeps the agent on its last valid settings, never on ``bootstrap.dcs``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgha import errors as e
from pgha.agent.settings import StoredSettings
from pgha.config.load import parse_stored_config
from pgha.config.model import DynamicConfig
from pgha.core.cluster import parse_cluster

PREFIX = "/pgha/demo/"


@dataclass
class KV:
    key: str
    value: str
    mod_revision: int = 7
    lease: int = 0


def view_with(config: object) -> object:
    raw = config if isinstance(config, str) else json.dumps(config)
    return parse_cluster([KV(PREFIX + "config", raw)], PREFIX, 7, parse_config=parse_stored_config)


def test_unknown_keys_are_left_out_and_named_the_rest_applies() -> None:
    parsed, warning = parse_stored_config({"ttl": 40, "synchronous_mode": "on", "future_key": 1,
                                           "postgresql": {"use_slotz": False, "use_slots": False}})
    assert parsed.ttl == 40 and parsed.synchronous_mode == "on" and parsed.postgresql.use_slots is False
    assert warning == "config in etcd: unknown key(s) future_key, postgresql.use_slotz: ignored"


def test_a_value_of_the_wrong_type_is_an_error_naming_the_key() -> None:
    with pytest.raises(e.ConfigError, match=r"config in etcd: ttl: .*\(value: 'soon'\)"):
        parse_stored_config({"ttl": "soon", "synchronous_mode": "on"})


def test_a_valid_config_reads_without_a_warning() -> None:
    assert parse_stored_config({"ttl": 40}) == (DynamicConfig(ttl=40), "")


def test_the_agent_keeps_its_last_valid_settings_while_the_stored_config_is_invalid(
        caplog: pytest.LogCaptureFixture) -> None:
    stored = StoredSettings(DynamicConfig())  # bootstrap.dcs: asynchronous, ttl 30
    good = view_with({"ttl": 40, "synchronous_mode": "on"})
    stored.follow(good)  # type: ignore[arg-type]
    assert stored.current(good).synchronous_mode == "on"  # type: ignore[arg-type]

    for broken in ({"ttl": "soon", "synchronous_mode": "on"}, "{not json"):
        bad = view_with(broken)
        assert bad.config is None and bad.config_problem  # type: ignore[attr-defined]
        with caplog.at_level(logging.INFO, logger="pgha"):
            stored.follow(bad)  # type: ignore[arg-type]
            stored.follow(bad)  # type: ignore[arg-type]
        now = stored.current(bad)  # type: ignore[arg-type]
        assert (now.ttl, now.synchronous_mode) == (40, "on"), "fell back to bootstrap.dcs"
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "running under the last valid settings" in errors[0], errors
        caplog.clear()
        stored.follow(good)  # type: ignore[arg-type]

    assert "the config in etcd is valid again" in caplog.text


def test_an_agent_restarted_while_the_stored_config_is_invalid_runs_under_the_last_one_it_saved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = str(tmp_path / "data.cluster-config.json")
    first = StoredSettings(DynamicConfig(), saved)
    first.follow(view_with({"ttl": 40, "synchronous_mode": "on"}))  # type: ignore[arg-type]

    again = StoredSettings(DynamicConfig(), saved)  # the agent restarted; etcd's config is now broken
    bad = view_with({"ttl": "soon", "synchronous_mode": "on"})
    with caplog.at_level(logging.INFO, logger="pgha"):
        again.follow(bad)  # type: ignore[arg-type]
    now = again.current(bad)  # type: ignore[arg-type]
    assert (now.ttl, now.synchronous_mode) == (40, "on"), "fell back to bootstrap.dcs"
    assert f"running under the last valid settings saved in {saved}" in caplog.text

    # A missing key is a new cluster (or wiped keys): bootstrap.dcs, as before.
    assert again.current(view_with_nothing()).ttl == DynamicConfig().ttl  # type: ignore[arg-type]


def test_a_saved_config_that_cannot_be_read_is_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    saved = tmp_path / "data.cluster-config.json"
    saved.write_text("{torn")
    with caplog.at_level(logging.INFO, logger="pgha"):
        stored = StoredSettings(DynamicConfig(), str(saved))
    assert stored.saved is None and "ignoring the saved cluster config" in caplog.text
    assert stored.current(view_with({"ttl": "soon"})).ttl == DynamicConfig().ttl  # type: ignore[arg-type]


def view_with_nothing() -> object:
    return parse_cluster([], PREFIX, 7, parse_config=parse_stored_config)
