"""A restarted primary agent takes its leader key back before loading the agent (``agent.quickstart``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
import yaml

from pgha.agent import quickstart
from pgha.testing import FAST, LocalCluster, wait_for

pytestmark = pytest.mark.slow


def test_killed_primary_agent_restarted_takes_its_key_back_before_loading_the_agent(
        make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    postmaster, timeline = leader.postmaster_pid(), (leader.status() or {})["timeline"]
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGKILL)  # the agent only: Postgres and the fence go on
    leader.proc.wait()
    leader.start()
    wait_for("the quick take-over logged", lambda: "before loading the agent" in leader.log_text() or None, 10)
    text = leader.log_text()
    restart = text.rindex("took over the leader key and re-armed the fence")
    assert restart < text.rindex("agent started")  # before the REST API and the loop
    wait_for("leading again", lambda: leader.health("/primary") == 200 or None, 10)
    assert leader.postmaster_pid() == postmaster and (leader.status() or {})["timeline"] == timeline
    assert c.leader().name == leader.name


def test_quick_take_over_alone_moves_the_fence_with_the_new_lease_so_postgres_stops_before_it_expires(
        make_cluster: Callable[..., LocalCluster]) -> None:
    # the agent dies again right after the quick take-over: the fence, moved to the new lease,
    # still stops Postgres before that lease can expire (and another node take over)
    c = make_cluster(nodes=1, dcs=FAST)
    c.start()
    n = c.leader()
    assert n.proc is not None
    n.proc.send_signal(signal.SIGKILL)
    n.proc.wait()
    t = quickstart.target(yaml.safe_load(n.config_path.read_text()), {})
    assert t is not None
    adopted = quickstart.take_over(t, time.monotonic())
    assert adopted is not None and adopted.ttl == FAST["ttl"]
    expires = adopted.granted_at + adopted.ttl
    written = float(open(f"{n.data_dir}.fence").read()) - time.clock_gettime(time.CLOCK_BOOTTIME) + time.monotonic()
    assert abs(written - (expires - adopted.retry_timeout / 2)) < 0.05  # the agent's rule, on the new lease
    wait_for("the fence stops postgres", lambda: n.postmaster_pid() is None or None, FAST["ttl"] + 2, interval=0.05)
    stopped = time.monotonic()
    assert stopped < expires, f"postgres ran {stopped - expires:.2f} s past the new lease"


def test_quick_take_over_leaves_a_key_that_is_not_ours_alone(make_cluster: Callable[..., LocalCluster]) -> None:
    c = make_cluster(nodes=2, dcs=FAST)
    c.start()
    leader = c.leader()
    replica = next(n for n in c.nodes if n is not leader)
    t = quickstart.target(yaml.safe_load(replica.config_path.read_text()), {})
    assert t is not None and quickstart.take_over(t, time.monotonic()) is None  # no fence armed there
    os.replace(f"{leader.data_dir}.fence.pid", f"{leader.data_dir}.fence.pid.kept")  # as if no fence ran
    try:
        tl = quickstart.target(yaml.safe_load(leader.config_path.read_text()), {})
        assert tl is not None and quickstart.take_over(tl, time.monotonic()) is None
    finally:
        os.replace(f"{leader.data_dir}.fence.pid.kept", f"{leader.data_dir}.fence.pid")
    assert leader.health("/primary") == 200
