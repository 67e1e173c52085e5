"""The port gate against the real kernel: an nftables table on a free loopback port, a TCP echo
server standing in for Postgres, and the agent's side of the gate in a process of its own that is
SIGSTOPped, as a frozen node's agent is. Needs root (CAP_NET_ADMIN) and nftables."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha.agent.fence import Fence
from pgha.agent.gate import PortGate
from pgha.testing import free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None,
                                reason="the port gate needs root and nftables")


class Echo:
    """A TCP server on 127.0.0.1 that answers every byte with itself."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

    def client(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=2)


def round_trip(sock: socket.socket) -> bool:
    """One byte there and back; False when the kernel reset the connection."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b"x"
    except ConnectionResetError:
        return False


def connects(echo: Echo) -> bool:
    try:
        with echo.client() as sock:
            return round_trip(sock)
    except ConnectionRefusedError:
        return False


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.sock.close()
    subprocess.run(["nft", "delete", "table", "inet", f"pgha_gate_{server.port}"], capture_output=True)


def arm_and_freeze(port: int, seconds: float) -> subprocess.Popen[bytes]:
    """An agent that sets the gate to close in ``seconds``, says so, and is then stopped."""
    code = ("import os, signal, sys\nfrom pgha.agent.gate import PortGate\n"
            f"gate = PortGate({port}, 'required')\nassert gate.close_in({seconds})\n"
            "print('armed', flush=True)\nos.kill(os.getpid(), signal.SIGSTOP)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"armed\n"
    return proc


def test_a_closing_gate_resets_clients_at_its_deadline_while_the_agent_is_frozen(echo: Echo) -> None:
    sock = echo.client()
    agent = arm_and_freeze(echo.port, 1.0)
    try:
        armed_at = time.monotonic()
        while round_trip(sock):
            assert time.monotonic() - armed_at < 5, "the port stayed open past the gate's deadline"
            time.sleep(0.05)
        closed_after = time.monotonic() - armed_at
        assert closed_after > 0.8, f"the port closed {closed_after:.2f} s after it was armed for 1 s"
        assert not connects(echo), "a new connection got through the closed gate"
    finally:
        agent.kill()
        agent.wait()
    # The agent's successor (restarted, or the same one thawed) opens the port by disarming.
    successor = PortGate(echo.port, "required")
    assert not connects(echo), "setting the gate up again opened a closed port"
    successor.open()
    assert connects(echo)
    assert successor.describe() == "open"


def test_renewals_keep_the_port_open(echo: Echo) -> None:
    gate = PortGate(echo.port, "required")
    sock = echo.client()
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        assert gate.close_in(0.5)
        assert gate.describe() == "closing"
        assert round_trip(sock), "a renewed gate reset a client"
        time.sleep(0.2)


def test_the_fence_opens_its_gate_when_disarmed_after_it_fired(echo: Echo, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()  # no postmaster.pid: the fence fires at nothing
    fence = Fence(str(data), gate=PortGate(echo.port, "required"))
    try:
        assert fence.arm(time.monotonic() + 0.5)
        wait_for("the fence to fire", lambda: fence.fired() == 1, 5)
        assert not connects(echo), "the fence fired and the port gate let a client in"
        assert fence.newly_fired() == 1 and not fence.armed
        fence.disarm("postgres takes no writes")
        assert connects(echo), "the port stayed closed after the fence was disarmed"
        assert fence.gate_state == "open"
    finally:
        fence.disarm("test over")


def as_nobody(code: str, *caps: str) -> str:
    """Run ``code`` as an unprivileged user, with ``caps`` in its ambient set (as systemd's
    ``AmbientCapabilities`` gives them); its output."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    given = ",".join(f"+{c}" for c in caps) or "-all"
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={given}"]
    if caps:
        argv.append(f"--ambient-caps={given}")
    out = subprocess.run([*argv, sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         cwd=str(Path(__file__).resolve().parents[2]), env={**os.environ, "PYTHONPATH": "."})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_agent_without_cap_net_admin_reports_the_required_gate_unusable(echo: Echo) -> None:
    out = as_nobody("from pgha.agent.fence import Fence\nfrom pgha.agent.gate import PortGate\n"
                    f"print(Fence('/nonexistent', gate=PortGate({echo.port}, 'required')).problem)\n")
    assert "port gate required but unusable" in out and "CAP_NET_ADMIN" in out, out
    assert connects(echo), "an unusable gate touched the port"


def test_an_agent_given_cap_net_admin_uses_the_gate_and_postgres_does_not_inherit_it(echo: Echo) -> None:
    out = as_nobody("import subprocess\nfrom pgha.agent.gate import PortGate\n"
                    f"gate = PortGate({echo.port}, 'required')\nprint(gate.describe())\n"
                    "print(subprocess.run(['grep', '^CapEff', '/proc/self/status'], capture_output=True, "
                    "text=True).stdout)\n", "net_admin")
    state, child = out.split("\n", 1)
    assert state == "open", out
    assert child.split() == ["CapEff:", "0000000000000000"], f"a child of the agent holds capabilities: {child}"
