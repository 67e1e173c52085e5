"""Logging set-up: one line per event, every line naming the cluster and the node; as text (the
default) or as one JSON object per line for log shippers, on stderr or in a rotated file."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

# LogRecord's own attributes: anything else on a record came from ``extra=`` (the event's fields).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "cluster", "node", "logger", "event", "template", ...}``: ``event`` is the
    message as the text format prints it, ``template`` its unformatted form (stable, to group by),
    then the fields given with ``extra=`` and ``exception`` when there is one."""

    def __init__(self, scope: str, name: str) -> None:
        super().__init__()
        self.scope, self.name = scope, name

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "cluster": self.scope, "node": self.name, "logger": record.name,
            "event": record.getMessage(), "template": str(record.msg)}
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def handler_for(directory: str | None, file_size: int, file_num: int) -> logging.Handler:
    """stderr, or ``<directory>/pgha.log`` rotated at ``file_size`` bytes keeping ``file_num`` old files."""
    if not directory:
        return logging.StreamHandler(sys.stderr)
    Path(directory).mkdir(parents=True, exist_ok=True)
    return logging.handlers.RotatingFileHandler(Path(directory) / "pgha.log", maxBytes=file_size,
                                                backupCount=file_num, encoding="utf-8")


def setup(scope: str, name: str, level: str = "INFO", fmt: str = "text", directory: str | None = None,
          file_size: int = 25_000_000, file_num: int = 4) -> None:
    handler = handler_for(directory, file_size, file_num)
    handler.setFormatter(JsonFormatter(scope, name) if fmt == "json" else
                         logging.Formatter(f"%(asctime)s %(levelname)s [{scope}/{name}] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Repeats:
    """One site's repeating error: logged the first time and again only as a count (after 10,
    100, 1000 ... repeats) or when the message changes, so a failing loop cannot flood the log."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.last = ""
        self.count = 0

    def error(self, message: str, *, exc_info: bool = False) -> None:
        if message != self.last:
            self.last, self.count = message, 0
        self.count += 1
        if self.count == 1:
            self.logger.error("%s", message, exc_info=exc_info)
        elif self.count in (10, 100) or self.count % 1000 == 0:
            self.logger.error("%s (%d times so far)", message, self.count)

    def clear(self) -> None:
        if self.count > 1:
            self.logger.info("recovered after %d repeats of: %s", self.count, self.last)
        self.last, self.count = "", 0
