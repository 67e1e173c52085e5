"""The port gate against the real kernel. A network namespace on a test bridge stands in for a
database node: a TCP echo server inside it plays Postgres, the agent's side of the gate runs in a
process of its own inside it (SIGSTOPped, as a frozen node's agent is), and clients connect from
the host namespace, as remote clients do. Needs root (CAP_NET_ADMIN) and nftables."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgha.testing import free_port, wait_for
from pgha.testing.netlab import Host, NetLab, why_not_available

ROOT = Path(__file__).resolve().parents[2]
PORT = 15432

pytestmark = pytest.mark.skipif(why_not_available() is not None, reason=str(why_not_available()))

ECHO = f"""
import socket, threading
def serve(conn):
    with conn:
        while data := conn.recv(64):
            conn.sendall(data)
srv = socket.create_server(("0.0.0.0", {PORT}))
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""

ROUND_TRIP = f"""
import socket
with socket.create_connection(("127.0.0.1", {PORT}), timeout=2) as s:
    s.sendall(b"x")
    print("ok" if s.recv(1) == b"x" else "no")
"""


@dataclass
class Node:
    host: Host

    def python(self, code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.host.argv(sys.executable, "-c", code), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def client(self) -> socket.socket:
        return socket.create_connection((self.host.addr, PORT), timeout=2)

    def connects(self) -> bool:
        """A new connection from the host namespace (a remote client), one byte there and back."""
        try:
            with self.client() as sock:
                return round_trip(sock)
        except ConnectionRefusedError:
            return False

    def connects_locally(self) -> bool:
        """The same over the node's loopback, as its agent connects."""
        proc = self.python(ROUND_TRIP)
        out, _ = proc.communicate(timeout=10)
        return out.strip() == "ok"


def round_trip(sock: socket.socket) -> bool:
    """One byte there and back; False when the kernel reset the connection."""
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b"x"
    except ConnectionResetError:
        return False


def said(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@pytest.fixture
def node() -> Iterator[Node]:
    lab = NetLab(f"g{os.getpid() % 10000}", subnet="10.79.0")
    try:
        lab.create()
        made = Node(lab.add_host("db", 2))
        echo = made.python(ECHO)
        assert said(echo) == "ready"
        yield made
    finally:
        lab.destroy()  # kills what runs in the namespace; its nftables tables go with it


def arm_and_freeze(n: Node, seconds: float) -> subprocess.Popen[str]:
    """An agent that sets the gate to close in ``seconds``, says so, and is then stopped."""
    agent = n.python("import os, signal\nfrom pgha.agent.gate import PortGate\n"
                     f"assert PortGate({PORT}, 'required').close_in({seconds})\n"
                     "print('armed', flush=True)\nos.kill(os.getpid(), signal.SIGSTOP)\n")
    assert said(agent) == "armed"
    return agent


def test_a_closing_gate_resets_remote_clients_at_its_deadline_while_the_agent_is_frozen(node: Node) -> None:
    sock = node.client()
    armed_at = time.monotonic()
    agent = arm_and_freeze(node, 1.0)
    try:
        closed_after = wait_for("the gate to close", lambda: None if round_trip(sock) else
                                time.monotonic() - armed_at, 5, interval=0.05)
        assert closed_after > 0.8, f"the port closed {closed_after:.2f} s after it was armed for 1 s"
        assert not node.connects(), "a new remote connection got through the closed gate"
        assert node.connects_locally(), "the closed gate refused the node's own loopback connection"
    finally:
        agent.kill()
        agent.wait()
    # The agent's successor (restarted, or the same one thawed) opens the port by disarming.
    successor = node.python(f"from pgha.agent.gate import PortGate\ng = PortGate({PORT}, 'required')\n"
                            "print(g.describe(), flush=True)\ninput()\ng.open()\nprint(g.describe(), flush=True)\n")
    said(successor)
    assert not node.connects(), "setting the gate up again opened a closed port"
    assert successor.stdin is not None
    successor.stdin.write("\n")
    successor.stdin.flush()
    assert said(successor) == "open"
    assert node.connects()


def test_renewals_keep_the_port_open(node: Node) -> None:
    renewing = node.python("import time\nfrom pgha.agent.gate import PortGate\n"
                           f"g = PortGate({PORT}, 'required')\nprint('armed', flush=True)\n"
                           "for _ in range(10):\n    assert g.close_in(0.5)\n    time.sleep(0.2)\n"
                           "print(g.describe(), flush=True)\n")
    assert said(renewing) == "armed"
    sock = node.client()
    while renewing.poll() is None:
        assert round_trip(sock), "a renewed gate reset a client"
    assert said(renewing) == "closing"


def test_the_fence_opens_its_gate_when_disarmed_after_it_fired(node: Node, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()  # no postmaster.pid: the fence fires at nothing
    agent = node.python("import time\nfrom pgha.agent.fence import Fence\nfrom pgha.agent.gate import PortGate\n"
                        "from pgha.testing import wait_for\n"
                        f"f = Fence({str(data)!r}, gate=PortGate({PORT}, 'required'))\n"
                        "assert f.arm(time.monotonic() + 0.5)\n"
                        "wait_for('the fence to fire', lambda: f.fired() == 1, 5)\nprint('fired', flush=True)\n"
                        "input()\nassert f.newly_fired() == 1 and not f.armed\n"
                        "f.disarm('postgres takes no writes')\nprint(f.gate_state, flush=True)\n")
    try:
        assert said(agent) == "fired"
        assert not node.connects(), "the fence fired and the port gate let a client in"
        assert agent.stdin is not None
        agent.stdin.write("\n")
        agent.stdin.flush()
        assert said(agent) == "open"
        assert node.connects(), "the port stayed closed after the fence was disarmed"
    finally:
        agent.kill()


# -- capabilities: on the host's loopback, where an unusable gate must touch nothing ----------------


@pytest.fixture
def echo_port() -> Iterator[int]:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        yield port
    subprocess.run(["nft", "delete", "table", "inet", f"pgha_gate_{port}"], capture_output=True)


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
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": "."})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_agent_without_cap_net_admin_reports_the_required_gate_unusable(echo_port: int) -> None:
    out = as_nobody("from pgha.agent.fence import Fence\nfrom pgha.agent.gate import PortGate\n"
                    f"print(Fence('/nonexistent', gate=PortGate({echo_port}, 'required')).problem)\n")
    assert "port gate required but unusable" in out and "CAP_NET_ADMIN" in out, out
    listed = subprocess.run(["nft", "list", "table", "inet", f"pgha_gate_{echo_port}"], capture_output=True)
    assert listed.returncode != 0, "an unusable gate made a table"


def test_an_agent_given_cap_net_admin_uses_the_gate_and_postgres_does_not_inherit_it(echo_port: int) -> None:
    out = as_nobody("import subprocess\nfrom pgha.agent.gate import PortGate\n"
                    f"gate = PortGate({echo_port}, 'required')\nprint(gate.describe())\n"
                    "print(subprocess.run(['grep', '^CapEff', '/proc/self/status'], capture_output=True, "
                    "text=True).stdout)\n", "net_admin")
    state, child = out.split("\n", 1)
    assert state == "open", out
    assert child.split() == ["CapEff:", "0000000000000000"], f"a child of the agent holds capabilities: {child}"
