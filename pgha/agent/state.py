"""What one loop hands to the next, and how the results of its actions fold into it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pgha.agent.jobs import Result
from pgha.core import parameters
from pgha.core.cluster import ClusterView
from pgha.core.snapshot import PgState, Snapshot
from pgha.ops import Inbox


@dataclass(frozen=True)
class LoopState:
    pg: PgState = PgState()
    view: ClusterView = ClusterView()
    leader_lost_at: float | None = None
    failover_seen_at: float | None = None  # since when the current switchover request has been seen
    applied_parameters: Mapping[str, Any] | None = None
    chosen_sync: str | None = None
    note: str = ""
    exit: bool = False
    fence_ok: bool = True
    peer_positions: Mapping[str, int] = field(default_factory=dict)
    peers_asked_at: float | None = None
    peers_asked: frozenset[str] = frozenset()
    peers_refused: frozenset[str] = frozenset()
    initialize_empty_since: float | None = None
    failsafe_asked_at: float | None = None
    failsafe_confirmed_at: float | None = None
    recheck: float | None = None  # the last decision asked to be taken again this soon


def since(prev: float | None, now: float, holds: bool) -> float | None:
    """When a condition that holds now began (None: it does not hold)."""
    return (prev if prev is not None else now) if holds else None


def fold(state: LoopState, snap: Snapshot, note: str, results: Sequence[Result], inbox: Inbox,
         recheck: float | None = None) -> LoopState:
    """The next loop's state after ``results`` (this loop's actions and the jobs that ended);
    operator requests that were carried out leave the inbox."""
    st = replace(state, note=note, recheck=recheck)
    for r in results:
        if r.applied_parameters is not None:
            st = replace(st, applied_parameters=r.applied_parameters)
        if r.chosen_sync is not None:
            st = replace(st, chosen_sync=r.chosen_sync)
        if r.peer_positions is not None:
            st = replace(st, peer_positions=r.peer_positions, peers_asked_at=snap.now, peers_asked=r.peers_asked,
                         peers_refused=r.peers_refused)
        if r.failsafe_round is not None:
            sent, accepted = r.failsafe_round
            st = replace(st, failsafe_asked_at=sent, failsafe_confirmed_at=sent if accepted else None)
        inbox.restart_at = None if r.restart_done else inbox.restart_at
        inbox.reinit_requested = inbox.reinit_requested and not r.reinit_started
        inbox.reload_requested = inbox.reload_requested and not r.reload_done
        st = replace(st, exit=st.exit or r.exit)
    if st.applied_parameters is None and snap.pg.running and snap.busy is None:
        # Postgres found running at our start runs with what its last start wrote.
        st = replace(st, applied_parameters=parameters.wanted(snap.config, st.chosen_sync))
    return st
