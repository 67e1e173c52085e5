"""Ask other members, over their REST APIs, for the WAL position each has received now, and
see which of them no longer has an agent listening."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from pgha.core.cluster import Member


REFUSED = -1  # the member's host answered that nothing listens on its API port: its agent is not running


async def _position(session: aiohttp.ClientSession, member: Member) -> int | None:
    try:
        async with session.get(member.api_url + "/status") as resp:
            body: Any = await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        # Refused, not timed out: a host that is down or cut off never says so, and a stopped
        # (SIGSTOP) agent's kernel still accepts the connection.
        return REFUSED if isinstance(exc.os_error, ConnectionRefusedError) else None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        return None
    xlog = body.get("xlog") if isinstance(body, dict) else None
    if not isinstance(xlog, dict) or body.get("role") != "replica":
        return None
    position = xlog.get("received_location")
    return position if isinstance(position, int) else None


async def received_positions(members: Mapping[str, Member], names: Iterable[str], timeout: float,
                             cafile: str | None = None) -> tuple[dict[str, int], frozenset[str]]:
    """The answers by member name (a member that does not answer in time is left out), and the
    members whose hosts refused the connection."""
    asked = [members[n] for n in names if n in members and members[n].api_url]
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    connector = aiohttp.TCPConnector(ssl=context if context else False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answers = await asyncio.gather(*(_position(session, m) for m in asked))
    return ({m.name: p for m, p in zip(asked, answers) if p is not None and p != REFUSED},
            frozenset(m.name for m, p in zip(asked, answers) if p == REFUSED))
