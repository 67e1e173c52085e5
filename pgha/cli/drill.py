"""``pgha drill``: for staging and game days. A built-in writer commits unique ids through
``--dsn`` while pgha switches over (default) or the leader fails for real (``--failover --kill
postgres|agent``); then the history is checked and a report printed, pass or fail."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgha.cli.context import Target, cluster_options
from pgha.core import events
from pgha.core.cluster import ClusterView
from pgha.drill.verdict import Verdict, judge
from pgha.drill.writer import Writer


@click.command()
@cluster_options
@click.option("--dsn", required=True, help="where the writer connects (HAProxy's write port, say)")
@click.option("--failover", is_flag=True, help="make the leader fail instead of switching over")
@click.option("--kill", type=click.Choice(["postgres", "agent"]), default="postgres", show_default=True,
              help="with --failover: SIGKILL the leader's postmaster (over SQL) or its agent (on this host)")
@click.option("--max-gap", type=float, default=30.0, show_default=True, help="seconds without a write that fail it")
@click.option("--settle", type=float, default=3.0, show_default=True, help="seconds of writes after the recovery")
@click.option("--i-know-this-is-not-production", "allowed", multiple=True, metavar="SCOPE",
              help="a cluster this drill may disturb (repeat for several)")
@click.option("--yes", is_flag=True, help="really do it")
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def drill(target: Target, dsn: str, failover: bool, kill: str, max_gap: float, settle: float,
          allowed: tuple[str, ...], yes: bool, fmt: str) -> None:
    """Switch over (or fail the leader) under writes and check that nothing was lost.

    Example: pgha drill -c node.yml --dsn "host=haproxy port=5000 user=app dbname=app" \\
    --failover --kill agent --i-know-this-is-not-production staging --yes
    """
    if target.scope not in allowed:
        raise click.UsageError(f"refusing to disturb cluster {target.scope}: name it with "
                               f"--i-know-this-is-not-production {target.scope}")
    if not yes:
        raise click.UsageError(f"this drill disturbs cluster {target.scope} for real: add --yes")
    view = target.view()
    if view.leader is None or view.leader not in view.members:
        raise click.ClickException("the cluster has no leader: nothing to drill")
    action = f"failover (kill {kill})" if failover else "switchover"
    writer = Writer(dsn, uuid.uuid4().hex[:12])
    try:
        writer.setup()
    except psycopg.Error as exc:
        raise click.ClickException(f"the writer cannot write through --dsn: {exc}") from exc
    writer.start()
    try:
        _wait("the writer's first commits", lambda: writer.acked() >= 20, 30)
        booted = _postmaster_start(dsn) or ""
        started, wall = time.monotonic(), time.time()
        old = view.leader
        if failover:
            _kill(target, view, dsn, kill)
        else:
            _switchover(target, view)
        if failover and kill == "postgres":  # the leader restarts it in place: no new leader
            _wait("postgres started again and taking writes", lambda: (
                (_postmaster_start(dsn) or "") > booted and writer.acked(time.monotonic() - 0.3) > 0),
                max(60.0, 3 * max_gap))
        else:
            _wait("a new leader taking writes", lambda: (target.view(require=False).leader not in (None, old)
                                                          and writer.acked(started) > 0), max(60.0, 3 * max_gap))
        time.sleep(settle)
    finally:
        writer.halt.set()
        writer.join(15)
    present = _present(dsn, writer.run_id)
    config = target.view().config
    verdict = judge(writer.ops, present, max_gap, sync=bool(config and config.synchronous_mode not in (False, "off")))
    event = _event(target, wall)
    report = _report(target.scope, action, old, target.view(require=False).leader, verdict, event)
    click.echo(json.dumps(report) if fmt == "json" else _pretty(report))
    if not verdict.passed:
        raise SystemExit(1)


def _wait(what: str, done: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return
        time.sleep(0.1)
    raise click.ClickException(f"drill: timed out after {timeout:.0f} s waiting for {what}")


def _postmaster_start(dsn: str) -> str | None:
    """When the Postgres behind ``dsn`` started (None: it does not answer)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
            return str(row[0]) if row else None
    except psycopg.Error:
        return None


def _switchover(target: Target, view: ClusterView) -> None:
    api = view.members[str(view.leader)].api_url
    status, reply = target.api("POST", api + "/switchover", {"leader": view.leader})
    if status != 200:
        raise click.ClickException(f"switchover refused ({status}): {(reply or {}).get('error', reply)}")


def _kill(target: Target, view: ClusterView, dsn: str, what: str) -> None:
    leader = view.members[str(view.leader)]
    if what == "postgres":
        # As the superuser of --dsn, straight to the leader's Postgres: the server kills its own
        # postmaster (COPY TO PROGRAM runs as the Postgres OS user). Works from any host.
        params = {**conninfo_to_dict(dsn), "host": leader.host, "port": str(leader.port), "connect_timeout": "5"}
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
            row = conn.execute("SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)::int").fetchone()
            assert row is not None
            try:
                conn.execute(f"COPY (SELECT 1) TO PROGRAM 'kill -KILL {int(row[0])}'")
            except psycopg.Error:
                pass  # the connection goes with the postmaster
        return
    pid = _local_agent(leader.name, urlsplit(leader.api_url).port)
    if pid is None:
        raise click.ClickException(f"--kill agent: the leader {leader.name}'s agent does not run on this host "
                                   f"(run the drill on its host)")
    os.kill(pid, signal.SIGKILL)


def _local_agent(name: str, api_port: int | None) -> int | None:
    """The pid of the agent on this host whose config names ``name`` and its REST API's port:
    another cluster's agent on the same host may carry the same node name (as the test clusters
    of two pytest workers do; the drill killed the wrong one)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pgha" not in b" ".join(argv) or b"agent" not in argv:
            continue
        config = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in (b"-c", b"--config")), None)
        try:
            text = "\n" + Path(os.fsdecode(config)).read_text() if config else ""
            if f"\nname: {name}\n" in text and (api_port is None or f":{api_port}" in text):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def _present(dsn: str, run: str) -> set[int]:
    for _ in range(20):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                return {r[0] for r in conn.execute("SELECT id FROM pgha.drill WHERE run = %s", (run,))}
        except psycopg.Error:
            time.sleep(0.5)
    raise click.ClickException("drill: cannot read the writes back through --dsn")


def _event(target: Target, since: float) -> events.Event | None:
    """The role change the drill caused, as the timeline recorded it (waits a little for it)."""
    for _ in range(30):
        recorded = [ev for ev in events.parse(target.view(require=False).events_raw)
                    if ev.kind in ("failover", "switchover", "restart") and ev.phases[-1].start >= since - 1]
        if recorded:
            return recorded[-1]
        time.sleep(0.5)
    return None


def _report(scope: str, action: str, old: str | None, new: str | None, v: Verdict,
            event: events.Event | None) -> dict[str, Any]:
    return {"scope": scope, "action": action, "old_leader": old, "new_leader": new,
            "result": "pass" if v.passed else "fail", "problems": list(v.problems),
            "acknowledged": v.acknowledged, "write_gap_seconds": round(v.gap, 3), "lost": len(v.lost),
            "lost_ids": list(v.lost[:20]), "forks": len(v.forks), "phantoms": len(v.phantoms),
            "event": event.to_dict() if event is not None else None}


def _pretty(r: dict[str, Any]) -> str:
    lines = [f"drill on {r['scope']}: {r['action']}, leader {r['old_leader']} -> {r['new_leader']}",
             f"  writes acknowledged: {r['acknowledged']}, write gap: {r['write_gap_seconds']:.2f} s",
             f"  lost: {r['lost']}, forks: {r['forks']}, phantoms: {r['phantoms']}"]
    ev = r["event"]
    if ev is not None:
        lines.append(f"  timeline ({ev['kind']}, {ev['total']:.2f} s): "
                     + ", ".join(f"{p['name']} {p['seconds']:.2f} s" for p in ev["phases"]))
    else:
        lines.append("  timeline: no event recorded for it")
    lines.append(f"  result: {r['result'].upper()}" + "".join(f"\n    - {p}" for p in r["problems"]))
    return "\n".join(lines)
