"""The agent's log as log shippers read it: one JSON object per line, rotated files, and
Patroni's ``log`` keys translated."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pgha import log
from pgha.config import load_local_config

EXAMPLE = Path(__file__).parents[1] / "patroni" / "configs" / "postgres0.yml"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        h.close()
    root.handlers[:], root.level = handlers, level


def test_json_format_is_one_object_per_line_with_cluster_node_event_and_fields(
        tmp_path: Path, restore_root: None) -> None:
    log.setup("demo", "n1", "INFO", "json", str(tmp_path))
    logger = logging.getLogger("pgha.agent")
    logger.info("lost leader lease, demoting %s", "n1", extra={"lease": 42})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("observation failed")
    lines = (tmp_path / "pgha.log").read_text().splitlines()
    first, second = (json.loads(x) for x in lines)
    assert first["cluster"] == "demo" and first["node"] == "n1" and first["level"] == "INFO"
    assert first["event"] == "lost leader lease, demoting n1"
    assert first["template"] == "lost leader lease, demoting %s" and first["lease"] == 42
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exception"]


def test_text_format_names_cluster_and_node(tmp_path: Path, restore_root: None) -> None:
    log.setup("demo", "n2", "INFO", "text", str(tmp_path))
    logging.getLogger("pgha.agent").info("leader")
    line = (tmp_path / "pgha.log").read_text()
    assert "INFO [demo/n2] leader" in line


def test_log_dir_rotates_by_size_and_keeps_file_num_old_files(tmp_path: Path, restore_root: None) -> None:
    log.setup("demo", "n1", "INFO", "json", str(tmp_path / "logs"), file_size=4096, file_num=2)
    for i in range(400):
        logging.getLogger("pgha.agent").info("event %d with some padding to fill the file quickly", i)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["pgha.log", "pgha.log.1", "pgha.log.2"]
    assert all((tmp_path / "logs" / f).stat().st_size <= 4096 for f in files)
    last = (tmp_path / "logs" / "pgha.log").read_text().splitlines()[-1]
    assert json.loads(last)["event"].startswith("event 399 ")


def test_log_keys_in_the_node_config_are_checked_by_name(tmp_path: Path) -> None:
    from pgha import errors as e

    base = yaml.safe_load(EXAMPLE.read_text())
    p = tmp_path / "patroni.yml"
    p.write_text(yaml.safe_dump({**base, "log": {"type": "json", "dir": str(tmp_path), "file_num": 3,
                                                 "file_size": 1000000, "format": "%(message)s"}}))
    cfg = load_local_config(p, environ={})
    assert (cfg.log.format, cfg.log.dir, cfg.log.file_num, cfg.log.file_size) == ("json", str(tmp_path), 3, 1000000)
    p.write_text(yaml.safe_dump({**base, "log": {"type": "json", "rotate_on_tuesdays": True}}))
    with pytest.raises(e.ConfigError, match="log.rotate_on_tuesdays"):
        load_local_config(p, environ={})


def test_patroni_log_variables_are_translated(tmp_path: Path) -> None:
    cfg = load_local_config(EXAMPLE, environ={"PATRONI_LOG_TYPE": "json", "PATRONI_LOG_DIR": str(tmp_path),
                                              "PATRONI_LOG_FILE_NUM": "7"})
    assert (cfg.log.format, cfg.log.dir, cfg.log.file_num) == ("json", str(tmp_path), 7)
