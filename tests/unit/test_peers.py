"""Asking peers over real loopback sockets: a refused connection (no agent listens) is told apart
from silence (a stopped agent, a cut host), which must never count as gone."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pgha.agent.peers import received_positions
from pgha.core.cluster import Member


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"role": "replica", "xlog": {"received_location": 5100}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_killed_agent_refuses_a_stopped_one_is_silent_and_a_live_one_answers(answering: int) -> None:
    with socket.socket() as stopped:  # listening, never accepting: what a SIGSTOPped agent's kernel does
        stopped.bind(("127.0.0.1", 0))
        stopped.listen(8)
        members = {
            "live": Member("live", api_url=f"http://127.0.0.1:{answering}"),
            "killed": Member("killed", api_url=f"http://127.0.0.1:{_closed_port()}"),
            "stopped": Member("stopped", api_url=f"http://127.0.0.1:{stopped.getsockname()[1]}"),
        }
        positions, refused = asyncio.run(received_positions(members, ["live", "killed", "stopped"], 0.5))
    assert positions == {"live": 5100}
    assert refused == frozenset({"killed"})
