"""Who may call write endpoints: HTTP basic auth (constant-time compare) and an allowlist of
addresses/networks; and the API's TLS context."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from pgha.config.model import RestApiConfig

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _credentials_ok(header: str | None, username: str, password: str) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, pw = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare both fields in full, always, so timing says nothing about which part was wrong.
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_pw = hmac.compare_digest(pw.encode(), password.encode())
    return ok_user and ok_pw


def address_allowed(remote: str | None, networks: Iterable[str]) -> bool:
    if remote is None:
        return False
    try:
        addr = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


def middleware(cfg: RestApiConfig, member_hosts: Callable[[], list[str]]) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in WRITE_METHODS:
            if cfg.allowlist or cfg.allowlist_include_members:
                allowed = list(cfg.allowlist)
                if cfg.allowlist_include_members:
                    allowed += [h for h in member_hosts() if h]
                if not address_allowed(request.remote, allowed):
                    return web.json_response({"error": f"{request.remote} is not in the allowlist"}, status=403)
            auth = cfg.authentication
            if auth is not None and not _credentials_ok(request.headers.get("Authorization"), auth.username, auth.password):
                return web.json_response({"error": "authentication required"}, status=401,
                                         headers={"WWW-Authenticate": 'Basic realm="pgha"'})
        return await handler(request)

    return guard


def ssl_context(cfg: RestApiConfig) -> ssl.SSLContext | None:
    if not cfg.certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    if cfg.verify_client != "none":
        ctx.load_verify_locations(cfg.cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.verify_client == "required" else ssl.CERT_OPTIONAL
    return ctx
