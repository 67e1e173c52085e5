"""The port gate's nftables scripts, and the mode an agent without nftables ends in. The gate
against the real kernel: tests/integration/test_port_gate.py."""

from __future__ import annotations

import ctypes

import pytest

from pgha.agent import gate as g
from pgha.agent.fence import Fence


def test_a_new_table_starts_open_and_one_already_there_keeps_its_element() -> None:
    new = g.setup_script(5432, new=True)
    assert 'iifname != "lo" tcp dport 5432 tcp dport != @open reject with tcp reset' in new
    assert new.endswith("add element inet pgha_gate_5432 open { 5432 }\n")
    again = g.setup_script(5432, new=False)
    assert "flush chain inet pgha_gate_5432 input" in again  # the rule is not doubled
    assert "element" not in again and "flush set" not in again


def test_the_element_times_out_in_whole_milliseconds_and_never_at_zero() -> None:
    assert g.element_script(6432, 3.2505).endswith("open { 6432 timeout 3250ms }\n")
    assert g.element_script(6432, -2.0).endswith("open { 6432 timeout 1ms }\n")  # past: closes at once
    assert g.element_script(6432, None) == "flush set inet pgha_gate_6432 open\nadd element inet pgha_gate_6432 open { 6432 }\n"


@pytest.mark.parametrize("mode", ["automatic", "required"])
def test_without_libnftables_only_a_required_gate_refuses_leadership(monkeypatch: pytest.MonkeyPatch,
                                                                     mode: g.GateMode) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    gate = g.PortGate(5432, mode)
    assert not gate.active and gate.describe().startswith("unusable: cannot set up the port gate")
    assert gate.close_in(3.0) is (mode == "automatic")  # a required gate that cannot close: demote
    problem = Fence("/nonexistent", gate=gate).problem
    if mode == "required":
        assert problem is not None and problem.startswith("port gate required but unusable")
    else:
        assert problem is None


def test_an_off_gate_touches_nothing() -> None:
    gate = g.PortGate(5432, "off")
    assert gate.describe() == "off" and gate.close_in(1.0) and Fence("/nonexistent", gate=gate).problem is None


def test_a_deadline_that_did_not_move_costs_no_netlink_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    # the fence is armed every loop but renewed only every few: one transaction per renewal
    sent: list[str] = []

    class Recording:
        def run(self, script: str) -> None:
            sent.append(script)

    gate = g.PortGate(5432, "off")
    gate.mode, gate._nft = "automatic", Recording()  # type: ignore[assignment]
    now = iter([100.0, 100.5, 101.0, 102.0, 103.0])
    monkeypatch.setattr(g.time, "monotonic", lambda: next(now))
    assert gate.close_in(5.0) and gate.close_in(4.5) and len(sent) == 1  # 105.0 both times
    assert gate.close_in(6.0) and len(sent) == 2  # a renewal moved it to 107.0
    gate.open()
    assert gate.close_in(6.0) and len(sent) == 4  # opened in between: set again
