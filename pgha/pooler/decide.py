"""What a pooler should do now: a pure function of what it sees (no I/O, time passed in).

The rules, in order:
1. A hand-over by the current leader is announced: pause, and say so once the pause is done.
2. The leader-key holder has confirmed it is the writable primary (its ``/primary`` answered 200
   on the last probe): point at it and resume.
3. etcd cannot be read, but the node we point at still confirms: keep it (a primary in failsafe
   mode goes on taking writes; the agent's ``/primary`` is the authority on that).
4. Anything else (no leader, a leader not yet writable, a target that stopped confirming): pause,
   so that statements queue instead of failing or reaching a node that is not the primary.
A pause lasts at most ``max_pause`` from its start: then the pooler resumes, pointed at a
confirmed primary if there is one, else nowhere, and stays so until a primary confirms again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha.core.poolers import Handover


@dataclass(frozen=True)
class Seen:
    """One look at the cluster. ``confirmed`` names the member whose ``/primary`` answered 200 on
    the latest probe (None: no such answer)."""

    now: float  # monotonic seconds
    etcd_ok: bool
    leader: str | None
    handover: Handover | None
    confirmed: str | None


@dataclass(frozen=True)
class Held:
    """What the pooler itself holds: where it points, and since when it wants a pause."""

    target: str | None  # None: nowhere (or not pointed yet)
    pause_wanted_since: float | None = None
    paused: bool = False  # the pause is complete (PgBouncer's PAUSE returned)


@dataclass(frozen=True)
class Plan:
    target: str | None  # point here (None: nowhere); meaningful only when not pausing
    pause: bool
    wants_pause: bool  # the episode goes on (the bound may have ended the pause itself)
    ack: int  # the hand-over to answer as paused for (0: none)
    note: str


def plan(seen: Seen, held: Held, max_pause: float) -> Plan:
    """The pooler's next state (see the module docstring)."""
    handing = seen.etcd_ok and seen.handover is not None and seen.handover.leader == seen.leader
    if handing:
        assert seen.handover is not None
        why = f"{seen.handover.leader} hands over to {seen.handover.candidate}"
        ack = seen.handover.revision
    elif seen.etcd_ok and seen.leader is not None and seen.confirmed == seen.leader:
        return Plan(seen.leader, False, False, 0, f"{seen.leader} is the writable primary")
    elif not seen.etcd_ok and held.target is not None and seen.confirmed == held.target:
        return Plan(held.target, False, False, 0, f"etcd unreachable; {held.target} still confirms as primary")
    else:
        why = _no_primary(seen)
        ack = 0
    since = held.pause_wanted_since if held.pause_wanted_since is not None else seen.now
    if seen.now - since < max_pause:
        return Plan(held.target, True, True, ack if held.paused else 0, f"pausing: {why}")
    # The bound ran out: resume, to a confirmed primary holding the key if there is one.
    target = seen.confirmed if seen.confirmed is not None and seen.confirmed in (seen.leader, held.target) \
        and (seen.confirmed == seen.leader or not seen.etcd_ok) else None
    where = target or "nowhere"
    return Plan(target, False, True, 0, f"pause ran out its {max_pause:g} s bound ({why}): resumed to {where}")


def _no_primary(seen: Seen) -> str:
    if not seen.etcd_ok:
        return "etcd unreachable and no confirmed primary"
    if seen.leader is None:
        return "no leader"
    return f"leader {seen.leader} is not yet the writable primary"
