"""A partition lab: every etcd member and every node in its own network namespace, on a bridge that
the lab creates (10.77.0.0/24 by default) with one veth pair each; clients, HAProxy and the checker
stay in the host namespace, at the bridge's address. Faults are silent drops (nftables rules that
drop packets on a namespace's way out), a link set down, and the cgroup (v1) freezer for a whole
node. Nothing is routed off the machine: the bridge has no uplink. Needs root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

FREEZER = Path("/sys/fs/cgroup/freezer")


def why_not_available() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the partition lab needs root (network namespaces, bridges, tc, the cgroup freezer)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"the partition lab needs '{tool}' (apt-get install {package})"
    if not (FREEZER / "freezer.state").exists() and not FREEZER.is_dir():
        return "the partition lab needs the cgroup v1 freezer at /sys/fs/cgroup/freezer"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=20)


@dataclass
class Host:
    """One namespace on the lab's bridge."""

    name: str
    netns: str
    addr: str
    veth: str  # the host side of the pair; inside, the interface is eth0
    cgroup: Path | None = None
    dropping: set[str] = field(default_factory=set)  # addresses whose packets from here are dropped

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd]

    def join_cgroup(self) -> None:
        """Called in a child before exec: the process (and all it starts) joins this host's cgroup."""
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))


class NetLab:
    def __init__(self, tag: str, subnet: str = "10.77.0") -> None:
        self.tag = tag  # keeps names unique per run: bridge, namespaces, cgroups
        self.subnet = subnet
        self.bridge = f"pgbr{tag}"[:15]
        self.gateway = f"{subnet}.1"
        self.hosts: dict[str, Host] = {}

    def create(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def add_host(self, name: str, octet: int, freezable: bool = False) -> Host:
        netns, veth = f"pgha-{self.tag}-{name}", f"pv{self.tag}{name}"[:15]
        addr = f"{self.subnet}.{octet}"
        cgroup = FREEZER / netns if freezable else None
        host = Host(name, netns, addr, veth, cgroup)
        self.hosts[name] = host  # registered first: ``destroy`` removes whatever was made
        _run("ip", "netns", "add", netns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _run("ip", "link", "set", veth, "master", self.bridge)
        _run("ip", "link", "set", veth, "up")
        inside = ["ip", "netns", "exec", netns]
        _run(*inside, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        # An output chain that drop rules are added to and flushed from, per destination.
        _run(*inside, "nft", "add", "table", "inet", "pgha")
        _run(*inside, "nft", "add", "chain", "inet", "pgha", "out",
             "{ type filter hook output priority 0; policy accept; }")
        if cgroup is not None:
            cgroup.mkdir(exist_ok=True)
        return host

    # -- faults -------------------------------------------------------------------------

    def drop(self, src: str, dst: str, both: bool = True) -> None:
        """Silently drop the packets ``src`` sends to ``dst`` (and back, when ``both``)."""
        self._drop(self.hosts[src], self.hosts[dst].addr)
        if both:
            self._drop(self.hosts[dst], self.hosts[src].addr)

    def _drop(self, host: Host, addr: str) -> None:
        if addr in host.dropping:
            return
        _run(*host.argv("nft", "add", "rule", "inet", "pgha", "out", "ip", "daddr", addr, "drop"))
        host.dropping.add(addr)

    def lossy(self, name: str, percent: int) -> None:
        """Drop ``percent`` % of the packets ``name`` sends and of those sent to it, at random
        (nftables' numgen: this kernel has no netem)."""
        host = self.hosts[name]
        for other in self.hosts.values():
            rule = ["numgen", "random", "mod", "100", "<", str(percent), "drop"]
            if other is not host:
                rule = ["ip", "daddr", host.addr, *rule]
            _run(*other.argv("nft", "add", "rule", "inet", "pgha", "out", *rule))
            other.dropping.add(f"{percent}% to {host.addr}")

    def heal(self, name: str | None = None) -> None:
        """Remove every drop rule (of one host, or of all) and set the links up."""
        for host in [self.hosts[name]] if name else list(self.hosts.values()):
            if host.dropping:
                _run(*host.argv("nft", "flush", "chain", "inet", "pgha", "out"), check=False)
                host.dropping.clear()
            self.link(host.name, True)

    def isolate(self, name: str, from_: list[str]) -> None:
        for other in from_:
            self.drop(name, other)

    def link(self, name: str, up: bool) -> None:
        _run(*self.hosts[name].argv("ip", "link", "set", "eth0", "up" if up else "down"))

    def freeze(self, name: str, frozen: bool) -> None:
        cgroup = self.hosts[name].cgroup
        if cgroup is None:
            raise ValueError(f"{name} was not made freezable")
        (cgroup / "freezer.state").write_text("FROZEN" if frozen else "THAWED")

    # -- teardown -----------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill whatever still runs in the lab's namespaces and cgroups, then delete them all."""
        for host in self.hosts.values():
            if host.cgroup is not None and host.cgroup.exists():
                (host.cgroup / "freezer.state").write_text("THAWED")
                for pid in (host.cgroup / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), 9)
                    except OSError:
                        pass
            pids = _run("ip", "netns", "pids", host.netns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            _run("ip", "netns", "del", host.netns, check=False)
            _run("ip", "link", "del", host.veth, check=False)
            if host.cgroup is not None:
                for _ in range(50):
                    try:
                        host.cgroup.rmdir()
                        break
                    except OSError:
                        time.sleep(0.1)
        _run("ip", "link", "del", self.bridge, check=False)
        self.hosts.clear()
