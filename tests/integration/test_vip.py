"""The virtual-IP callback example (configs/callbacks/vip.sh) in the partition lab: the address
follows the primary across a failover, answers from the new primary's namespace within a second of
its promotion, and is held by one namespace only."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from pgha.testing import Node, wait_for
from pgha.testing.netlab import Host, why_not_available
from tests.partition import Lab, heal_everything, open_lab, settle, vip_of

pytestmark = [pytest.mark.slow, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    problem = why_not_available()
    if problem:
        pytest.skip(problem)
    with open_lab("async", f"{os.getpid() % 100000}v") as made:
        yield made


def sh(host: Host, *cmd: str) -> str:
    return subprocess.run(host.argv(*cmd), capture_output=True, text=True, timeout=10, check=False).stdout


def holders(lab: Lab) -> list[str]:
    """The nodes whose namespace has the virtual IP."""
    vip = vip_of(lab.net)
    return [n.name for n in lab.cluster.nodes if f" {vip}/" in sh(lab.net.hosts[n.name], "ip", "-o", "addr")]


def answered_by(lab: Lab, client: Host) -> str | None:
    """Which node's interface answered the client's ping to the virtual IP (by MAC), if any."""
    vip = vip_of(lab.net)
    if subprocess.run(client.argv("ping", "-c", "1", "-W", "0.2", vip), capture_output=True, check=False).returncode:
        return None
    found = re.search(r"lladdr (\S+)", sh(client, "ip", "neigh", "show", vip))
    macs = {sh(lab.net.hosts[n.name], "cat", "/sys/class/net/eth0/address").strip(): n.name for n in lab.cluster.nodes}
    return macs.get(found.group(1)) if found else None


def promoted_at(node: Node) -> float:
    """Wall time of the node's last 'promoted' log line."""
    stamps = re.findall(r"^(\S+ \S+) INFO .*promoted " + re.escape(node.name), node.log_text(), re.MULTILINE)
    assert stamps, f"{node.name} never logged its promotion"
    return datetime.datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_vip_follows_the_primary_and_answers_from_the_new_primary_within_a_second(lab: Lab) -> None:
    old = settle(lab)
    client = lab.net.hosts.get("vipc") or lab.net.add_host("vipc", 60)
    try:
        wait_for("the VIP on the primary only", lambda: holders(lab) == [old.name], 30)
        wait_for("the VIP answering from the primary", lambda: answered_by(lab, client) == old.name, 10)

        lab.net.link(old.name, False)  # the primary drops off the network: a replica takes over
        seen: dict[str, float] = {}

        def new_primary_answers() -> bool:
            who = answered_by(lab, client)
            if who is not None and who != old.name:
                seen[who] = time.time()
                return True
            return False

        wait_for("the VIP answering from another node", new_primary_answers, 60, interval=0.05)
        (new_name, answered), = seen.items()
        new = lab.cluster.node(new_name)
        assert new.health("/primary") == 200
        lag = answered - promoted_at(new)
        print(f"the VIP answered from {new_name} {lag:.2f} s after its promotion")
        assert lag <= 1.0, f"the VIP answered from {new_name} {lag:.2f} s after its promotion"
        # the isolated old primary demoted and dropped the address (its namespace is checked directly)
        assert holders(lab) == [new_name]

        lab.net.link(old.name, True)
        wait_for(f"{old.name} back as a replica", lambda: old.health("/replica") == 200, 90)
        assert holders(lab) == [new_name] and answered_by(lab, client) == new_name
    except BaseException:
        print(lab.cluster.dump_logs())
        raise
    finally:
        heal_everything(lab)
