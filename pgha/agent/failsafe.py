"""The primary's side of failsafe mode: one round of ``POST /failsafe`` to every other member,
in parallel, with a short timeout. The rule that decides when to ask, and what a round is worth,
is ``pgha.core.failsafe``'s."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from pgha.config.model import RestApiConfig

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
