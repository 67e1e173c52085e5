"""The primary's side of failsafe mode: one round of ``POST /failsafe`` to every other member,
in parallel, with a short timeout. The rule that decides when to ask, and what a round is worth,
is ``pgha.core.failsafe``'s."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from pgha.agent.jobs import Result
from pgha.config.model import RestApiConfig
from pgha.core import failsafe as rule
from pgha.core.actions import ConfirmFailsafe
from pgha.core.snapshot import Snapshot

log = logging.getLogger("pgha")

ACCEPTED = "Accepted"  # Patroni's answer, checked as Patroni checks it (status 200 and this body)


async def _ask(session: aiohttp.ClientSession, name: str, url: str, body: Mapping[str, Any]) -> str | None:
    """None when ``name`` accepted; else why not."""
    try:
        async with session.post(url.rstrip("/").removesuffix("/patroni") + "/failsafe", json=body) as resp:
            text = (await resp.text()).strip()
            if resp.status == 200 and text == ACCEPTED:
                return None
            return f"{resp.status} {text[:80]}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return f"unreachable ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"


async def confirm(members: Sequence[tuple[str, str]], body: Mapping[str, Any], timeout: float,
                  api: RestApiConfig) -> dict[str, str]:
    """Ask every member; the refusals by name (empty: every member accepted)."""
    if not members:
        return {}
    context = ssl.create_default_context(cafile=api.cafile) if api.cafile else None
    if context is not None and api.certfile:
        context.load_cert_chain(api.certfile, api.keyfile)
    auth = aiohttp.BasicAuth(api.authentication.username, api.authentication.password) \
        if api.authentication is not None else None
    connector = aiohttp.TCPConnector(ssl=context if context else False)
    async with aiohttp.ClientSession(connector=connector, auth=auth,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answers = await asyncio.gather(*(_ask(session, n, u, body) for n, u in members))
    return {n: why for (n, _), why in zip(members, answers) if why is not None}


async def confirm_round(act: ConfirmFailsafe, s: Snapshot, api: RestApiConfig) -> Result:
    """One round for the executor: what it is worth goes back to the loop as ``failsafe_round``
    (when it was sent; whether every member accepted)."""
    sent = time.monotonic()
    mine = s.cluster.members.get(s.name)
    body = {"name": s.name, "conn_url": mine.conn_url if mine else "", "api_url": api.url + "/patroni",
            "slots": dict(s.cluster.status.slots)}
    refused = await confirm(act.members, body, rule.round_timeout(s.config), api)
    if refused:
        log.error("etcd unreachable and failsafe round failed (%s): demoting unless the lease still holds",
                  "; ".join(f"{n}: {why}" for n, why in sorted(refused.items())))
    elif s.failsafe_confirmed_at is None:
        log.warning("etcd unreachable: every member (%s) confirms this primary; staying primary in failsafe mode",
                    ", ".join(n for n, _ in act.members) or "no other member")
    return Result(failsafe_round=(sent, not refused), wake=not refused)
