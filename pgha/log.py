"""Logging set-up: one line per event, every line naming the cluster and the node."""

from __future__ import annotations

import logging
import sys


def setup(scope: str, name: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{scope}/{name}] %(message)s"))
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
