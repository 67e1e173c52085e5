"""Write-access checks of the REST API (pure parts)."""

from __future__ import annotations

import base64

from pgha.api.security import _credentials_ok, address_allowed


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def test_addresses_match_networks_and_member_hosts() -> None:
    assert address_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert address_allowed("127.0.0.1", ["192.0.2.0/24", "127.0.0.1"])  # a member's own address
    assert not address_allowed("192.168.1.1", ["10.0.0.0/8"])
    assert not address_allowed(None, ["0.0.0.0/0"])
    assert not address_allowed("not-an-ip", ["0.0.0.0/0"])


def test_basic_auth_needs_both_parts_right() -> None:
    assert _credentials_ok(basic("admin", "pw:with:colons"), "admin", "pw:with:colons")
    assert not _credentials_ok(basic("admin", "wrong"), "admin", "pw")
    assert not _credentials_ok(basic("root", "pw"), "admin", "pw")
    assert not _credentials_ok("Basic !!!", "admin", "pw")
    assert not _credentials_ok("Bearer x", "admin", "pw")
    assert not _credentials_ok(None, "admin", "pw")
