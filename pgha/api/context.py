"""What the API may see and touch: the node report, the operator inbox, the cluster store and
the dynamic config. Never the agent itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pgha.config.model import LocalConfig
from pgha.core.report import NodeReport
from pgha.core.settings import ClusterSettings
from pgha.dcs.store import ClusterStore
from pgha.ops import Inbox


@dataclass(frozen=True)
class ApiContext:
    local: LocalConfig
    report: Callable[[], NodeReport]
    inbox: Inbox
    store: ClusterStore
    dynamic: Callable[[], ClusterSettings]
    # Problems Postgres would find with these parameters ([] when none, or when it cannot tell).
    check_parameters: Callable[[dict[str, Any]], list[str]] = lambda _: []


CONTEXT = web.AppKey("context", ApiContext)
MAX_BODY = web.AppKey("max_body", int)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
