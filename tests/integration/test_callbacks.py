"""Callbacks on a real cluster: each event runs its script with Patroni's arguments, and a script
that hangs holds up neither the switchover nor the demotion; it is killed at its timeout and
counted in the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pgha.testing import LocalCluster, http_request, wait_for

pytestmark = pytest.mark.slow


def test_callbacks_run_on_each_event_and_a_hanging_one_delays_no_switchover(
        make_cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    record = tmp_path / "record.sh"
    record.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    record.chmod(0o755)
    seen = tmp_path / "primary-seen"
    release = tmp_path / "release"  # the hanging scripts end once this exists (so the teardown needs no wait)
    c = make_cluster(nodes=2)
    for n in c.nodes:
        # The role-change script also asks its own node's /primary at once: a callback that moves
        # traffic (a virtual IP) must find the health check already agreeing with the new role.
        hang = tmp_path / f"hang-{n.name}.sh"
        hang.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                        f'[ "$2" = primary ] && curl -s -o /dev/null -w "%{{http_code}}\\n" {n.api}/primary >> {seen}\n'
                        f'i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done\n')
        hang.chmod(0o755)
        n.config["postgresql"]["callbacks"] = {"on_start": str(record), "on_reload": str(record),
                                               "on_role_change": str(hang), "timeout": 10}
    c.start()
    leader = c.leader()
    other = next(n for n in c.nodes if n is not leader)
    wait_for("on_start of both nodes", lambda: calls.exists() and sorted(calls.read_text().splitlines()) == [
        "on_start primary demo", "on_start replica demo"], 30)

    t0 = time.monotonic()
    code, body, _ = http_request("POST", leader.api + "/switchover", {"leader": leader.name, "candidate": other.name})
    assert code == 200, body
    wait_for("the candidate promoted", lambda: other.health("/primary") == 200, 20)
    took = time.monotonic() - t0
    # both role-change scripts were still hanging (for 10 s) when the switchover was done
    assert took < 8, f"switchover took {took:.1f} s with hanging callbacks"
    lines = calls.read_text().splitlines()
    assert "on_role_change replica demo" in lines and "on_role_change primary demo" in lines
    # (the shell's redirect creates the file before curl has written the status code to it)
    wait_for("the promoted node's callback asked /primary", lambda: seen.exists() and seen.read_text().strip(), 10)
    assert seen.read_text().split() == ["200"], "on_role_change primary ran while /primary still said 503"

    wait_for("the hanging callbacks killed at their timeout", lambda: all(
        "callback on_role_change" in n.log_text() and "timed out after" in n.log_text() for n in c.nodes), 40)
    metrics = http_request("GET", other.api + "/metrics")[1]
    failures = [line for line in metrics.splitlines() if line.startswith("pgha_callback_failures_total")
                and 'action="on_role_change"' in line]
    assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 1

    code, _, _ = http_request("POST", other.api + "/reload")
    assert code in (200, 202)
    wait_for("on_reload", lambda: "on_reload primary demo" in calls.read_text(), 20)
    release.touch()
