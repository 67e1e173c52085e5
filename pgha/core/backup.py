"""Base backups with pgBackRest, driven by the cluster (pure): the ``backup`` key, who takes a
backup, and when the schedule asks for one.

``pgha backup`` (or the leader, when ``backup.schedule`` fires) writes the ``backup`` key naming
the member that runs it: by default a healthy replica, in pgBackRest's standby mode (the files
come from the replica, only the start and stop of the backup touch the primary). That member's
agent sees the key, runs the backup and writes the outcome back, compare-and-set. One key means
at most one backup at a time, and a new leader reads the same key: a failover moves the
schedule (``schedule_fired`` is carried from record to record) and never runs it twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from typing import TYPE_CHECKING

from pgha.core import cron

if TYPE_CHECKING:
    from pgha.core.cluster import ClusterView

REQUESTED, RUNNING, DONE, FAILED = "requested", "running", "done", "failed"
TYPES = ("full", "diff", "incr")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CATCH_UP = 3600.0  # a scheduled time missed by less than this (cluster down, no leader) still runs


@dataclass(frozen=True)
class Backup:
    """The ``backup`` key. Times are epoch seconds on the writer's clock; ``primary`` is the
    leader's Postgres when the backup was asked for (host, port, data directory): a standby
    backup needs it."""

    member: str
    type: str = "full"
    state: str = REQUESTED
    requested_at: float = 0.0
    requested_by: str = ""  # "pgha backup" | "schedule"
    primary: tuple[str, int, str] = ("", 0, "")
    standby: bool = True
    started: float = 0.0
    finished: float = 0.0
    label: str = ""  # pgBackRest's backup label, e.g. 20261205-191058F
    reason: str = ""  # why it failed
    schedule_fired: float = 0.0  # the last scheduled instant served (carried to later records)
    revision: int = 0

    @property
    def running(self) -> bool:
        return self.state in (REQUESTED, RUNNING)

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("revision")
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str, revision: int) -> Backup | None:
        try:
            d = json.loads(raw)
            d["primary"] = tuple(d.get("primary") or ("", 0, ""))
            known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "revision"}
            return cls(**known, revision=revision)
        except (json.JSONDecodeError, TypeError, ValueError):
            return None

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("primary")
        d.pop("revision")
        return d

    def progress(self) -> str:
        what = f"{self.type} backup on {self.member}" + (" (standby mode)" if self.standby else "")
        if self.state == DONE:
            return f"{what} done: {self.label} in {self.finished - self.started:.1f} s"
        if self.state == FAILED:
            return f"{what} failed: {self.reason}"
        return f"{what} {self.state}"


def request(view: ClusterView, member: str, kind: str, by: str, primary: tuple[str, int, str], now: float,
            fired: float | None = None) -> Backup:
    """The record that asks ``member`` for a backup (replacing a finished one)."""
    prev = view.backup
    carried = prev.schedule_fired if prev is not None else 0.0
    return Backup(member=member, type=kind, requested_at=now, requested_by=by, primary=primary,
                  standby=member != view.leader, schedule_fired=fired if fired is not None else carried,
                  revision=prev.revision if prev is not None else 0)


def scheduled(schedule: str | None, view: ClusterView, now: float) -> float | None:
    """The scheduled instant the leader should serve now (None: nothing due): the last time the
    schedule fired, if no record served it yet and it is less than ``CATCH_UP`` old."""
    if not schedule:
        return None
    fired = cron.parse(schedule).last_fire(now)
    if fired is None or now - fired > CATCH_UP:
        return None
    prev = view.backup
    if prev is not None and (prev.running or prev.schedule_fired >= fired):
        return None
    return fired


def stale(view: ClusterView, now: float, timeout: float) -> str | None:
    """Why a running backup can no longer finish (the leader marks it failed), else None."""
    b = view.backup
    if b is None or not b.running:
        return None
    if b.member not in view.members:
        return f"{b.member} left the cluster during the backup"
    if now - (b.started or b.requested_at) > timeout:
        return f"no outcome from {b.member} within backup.timeout ({timeout:.0f} s)"
    return None


@dataclass(frozen=True)
class Step:
    """What a member's backup runner does on this turn (``next_step``)."""

    kind: str  # start | interrupted | fail | schedule | none
    reason: str = ""  # fail: why
    fired: float = 0.0  # schedule: the slot being served


def next_step(view: ClusterView, me: str, running_here: bool, leading: bool, now: float, timeout: float,
              schedule: str | None) -> Step:
    """The backup key's next move from this member's side: the named member starts a requested
    backup, or fails its own running one that no task of this agent runs (it restarted); the
    leader fails a stale backup (never one it runs itself) and serves the schedule."""
    b = view.backup
    if b is not None and b.member == me and not running_here:
        if b.state == REQUESTED:
            return Step("start")
        if b.state == RUNNING:
            return Step("interrupted", reason="interrupted: the agent restarted")
    if not leading:
        return Step("none")
    why = stale(view, now, timeout)
    if why is not None and b is not None and not (b.member == me and running_here):
        return Step("fail", reason=why)
    fired = scheduled(schedule, view, now)
    return Step("schedule", fired=fired) if fired is not None else Step("none")


def finished(b: Backup, ok: bool, now: float, label: str = "", reason: str = "") -> Backup:
    return replace(b, state=DONE if ok else FAILED, finished=now, label=label, reason=reason)


def argv(b: Backup, stanza: str, config_path: str, data_dir: str, port: int, socket_dir: str, user: str,
         host: str) -> list[str]:
    """pgBackRest's options for ``b`` on this member (pg1), before the command (and, for a
    standby backup, ``--backup-standby``); a standby backup names the primary as pg2, reached through pgBackRest's own remote (``pg2-host``, set up in
    pgbackrest.conf) when it runs on another host."""
    out = ["pgbackrest", *([f"--config={config_path}"] if config_path else []), f"--stanza={stanza}",
           f"--pg1-path={data_dir}", f"--pg1-port={port}", f"--pg1-socket-path={socket_dir}", f"--pg1-user={user}"]
    if b.standby:
        p_host, p_port, p_dir = b.primary
        out += [f"--pg2-path={p_dir}", f"--pg2-port={p_port}", f"--pg2-socket-path={socket_dir}",
                f"--pg2-user={user}"]
        if p_host != host and not {p_host, host} <= _LOOPBACK:
            out.append(f"--pg2-host={p_host}")
    return out


def label(output: str) -> str:
    """The backup label from pgBackRest's console output (``new backup label = ...``)."""
    for line in output.splitlines():
        if "new backup label = " in line:
            return line.rsplit("= ", 1)[1].strip()
    return ""
