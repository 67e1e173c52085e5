"""The verification matrix (a benchmark, not a test): every scenario of ``tests/catalogue.py`` on
pgha and on Patroni 4.1.5, in strict synchronous and in asynchronous mode, in the partition lab
(3 etcd members and 3 nodes in network namespaces, clients through HAProxy and straight to every
node, ``tests/history.py``'s checker). Both systems run at one timing (ttl 20, loop_wait 2,
retry_timeout 4: Patroni refuses a ttl under 20), and for each mode both labs are up at once, so
each scenario runs on one system and then on the other.

Each run is one JSON line in ``bench/results/matrix.jsonl`` (runs accumulate; ``--runs N`` adds
N per cell); ``docs/verification.md``'s matrix section is generated from every line of the
current commit's code (``--table`` only regenerates it).

    PYTHONPATH=. .venv/bin/python bench/matrix.py [--runs 1] [--only SCENARIO] [--systems pgha,patroni]
        [--modes sync,async] [--table]

Needs root, the lab's tools, and gcc for the clock scenario (bench/clockstep.c); installs Patroni from PyPI
into its own venv (``PATRONI_VENV``)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "matrix.jsonl"
TIMING = {"ttl": 20, "loop_wait": 2, "retry_timeout": 4}
SUBNETS = {("pgha", "sync"): "10.78.0", ("pgha", "async"): "10.78.1",
           ("patroni", "sync"): "10.78.2", ("patroni", "async"): "10.78.3"}
# What the old node's log says it did to rejoin, per system (first match wins).
REJOIN = {
    "pgha": [("rewind", "rewinding from"), ("clone", "cloned from|re-cloning"), ("restart", "rejoined without a rewind")],
    "patroni": [("rewind", "running pg_rewind from"), ("clone", "replica has been created using basebackup|"
                                                                "trying to bootstrap from leader")],
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()


class Slot:
    """One lab (a system in a mode), opened on first use and opened anew after it failed to heal."""

    def __init__(self, system: str, mode: str) -> None:
        self.system, self.mode = system, mode
        self.stack: contextlib.ExitStack | None = None
        self.lab: Any = None

    def get(self) -> Any:
        from tests.catalogue import clockstep_library, small_disk, with_clockstep
        from tests.partition import open_lab, settle

        if self.lab is None:
            stack = self.stack = contextlib.ExitStack()
            library = clockstep_library()

            def prepare(cluster: Any) -> None:
                for n in cluster.nodes:  # unmounted after the lab is gone (registered before it)
                    stack.callback(small_disk(n))
                    own_sockets(n)
                    if library is not None:
                        with_clockstep(n, library)

            try:
                self.lab = stack.enter_context(open_lab(
                    self.mode, f"x{self.mode[0]}{self.system[:2]}", dict(TIMING), system=self.system,
                    subnet=SUBNETS[(self.system, self.mode)], prepare=prepare))
            except BaseException:
                self.close()
                raise
        settle(self.lab)
        return self.lab

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        self.stack, self.lab = None, None


def own_sockets(n: Any) -> None:
    """Postgres's unix socket in the node's own directory: the labs of both modes use the same
    ports, and would share /tmp's socket and lock files (Patroni's nodes do this themselves)."""
    sock = n.dir / "sock"
    sock.mkdir()
    pw = pwd.getpwnam("postgres")
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    n.config["postgresql"]["parameters"]["unix_socket_directories"] = str(sock)


def serving(lab: Any, node: Any) -> bool:
    """The node is the cluster's one primary, or a standby whose WAL receiver streams: judged from
    Postgres itself, the same way for both systems (Patroni's /replica answers 200 for a standby
    that does not stream; an orphaned primary is not serving)."""
    import psycopg

    with psycopg.connect(node.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)").fetchone()
    if row is None:
        return False
    if row[0]:
        return bool(row[1] == "streaming")
    return [n for n in lab.cluster.nodes if n.health("/primary") == 200] == [node]


def stale_by(lab: Any, stale: list[Any]) -> dict[str, int]:
    """Who served the stale reads: a node's name, and ``<name> as primary`` for one that was not in
    recovery (an old primary on its own branch, the worse kind)."""
    names = {f"{n.host}:{n.pg_port}": n.name for n in lab.cluster.nodes}
    out: dict[str, int] = {}
    for s in stale:
        key = names.get(s.server, s.server) + ("" if s.in_recovery else " as primary")
        out[key] = out.get(key, 0) + 1
    return out


def old_primary_wrote(ok: list[Any], host: str, timeline: int, began: float, offset: float) -> float | None:
    """Seconds from the fault (``began``, monotonic) to the last write the old primary at ``host``
    ran on its ``timeline``: by when the server ran it (the host's wall clock, which ``offset``
    maps onto the monotonic one), not when its client heard of it, which a link down can delay by
    the whole fault."""
    ran = [o.ran - offset if o.ran else o.at for o in ok if o.node == host and o.timeline == timeline]
    last = max((t for t in ran if t >= began), default=None)
    return None if last is None else last - began


def unwanted(failovers: int, expect: str, forbidden: int, caused: int) -> int:
    """Promotions beyond what the scenario allows (none when ``expect`` is "no", else one),
    less the ones the run caused on purpose (``caused``), plus the ones the scenario saw
    without a new timeline (``forbidden``)."""
    return forbidden + max(0, failovers - caused - (expect != "no"))


def rejoin(lab: Any, system: str, old: Any, logged: int, ended: float) -> tuple[float | None, str]:
    """Seconds from the end of the fault until the old primary served again (as replica or
    primary), and how: rewind, clone, restart (a plain restart as a replica), or none."""
    from pgha.testing import wait_for
    from tests.partition import heal_everything

    heal_everything(lab)
    try:
        wait_for("the old primary serving again", lambda: serving(lab, old), 120, interval=0.2)
        took: float | None = max(0.0, time.monotonic() - ended)
    except TimeoutError:
        took = None
    text = old.log_text()[logged:]
    for method, pattern in REJOIN[system]:
        if re.search(pattern, text):
            return took, method
    return took, "restart" if took is not None and old.health("/primary") != 200 else "none"


def one(slot: Slot, scenario: Any) -> dict[str, Any]:
    import psycopg

    from pgha.testing import wait_for
    from tests.history import regressions
    from tests.partition import ROWS, Recorder

    lab = slot.get()
    # Each run starts from empty rows: a row rewritten whole on every append would otherwise grow
    # across runs until its WAL filled the nodes' disks (and the checker's work grows with it).
    # TRUNCATE and a checkpoint, not an UPDATE: the dead versions and the WAL behind them stayed
    # on the 2 GiB disks, and three write-heavy runs in a row filled them (a run that never healed).
    with wait_for("the rows emptied", lambda: psycopg.connect(lab.cluster.leader().dsn(), autocommit=True), 30) as conn:
        conn.execute("TRUNCATE reg")
        conn.execute("INSERT INTO reg (k) SELECT g FROM generate_series(0, %s) g", (ROWS - 1,))
        conn.execute("CHECKPOINT")
    mode_expect = scenario.expect[0 if slot.mode == "sync" else 1]
    with Recorder(lab, reader=True) as rec:
        logged = {n.name: len(n.log_text()) for n in lab.cluster.nodes}
        before = max(rec.timelines())
        fault = scenario.run(lab, rec)
        took, method = rejoin(lab, slot.system, fault.old, logged[fault.old.name], fault.ended or time.monotonic())
        # Recorded until writes come back after the heal too: a cluster that recovers only then
        # shows its whole gap, and its first write on a new primary.
        healed = time.monotonic()
        with contextlib.suppress(TimeoutError):
            wait_for("writes after the heal", lambda: rec.acked(healed) > 20, 120)
        recorded = time.monotonic()
        report = rec.report(f"{scenario.name} ({slot.system})")
        stale = rec.stale_reads(report.lost)
        ok = [o for o in rec.ops if o.outcome == "ok"]
    newer = sorted({o.timeline for o in ok if o.timeline > before})
    acks = sorted(o.at for o in ok)
    after = [t for t in acks if t >= fault.began]
    last_before = max((t for t in acks if t < fault.began), default=fault.began)
    gap = max(b - a for a, b in zip([last_before, *after], [*after, recorded]))
    first = min((o.at for o in ok if o.timeline > before), default=None)
    old = old_primary_wrote(ok, fault.old.host, before, fault.began, time.time() - time.monotonic())
    return {
        "acknowledged": report.acknowledged, "lost": len(report.lost), "forks": len(report.forks),
        "late": len(report.late), "inflight": len(report.inflight), "delayed": len(report.delayed), "phantoms": len(report.phantoms),
        "regressions": len(regressions(rec.ops)), "reads": rec.reader.reads if rec.reader else 0,
        "stale_reads": len(stale), "stale_max_s": round(max((s.age for s in stale), default=0.0), 1),
        "stale_by": stale_by(lab, stale),
        "write_gap_s": round(gap, 2),
        "first_write_s": None if first is None else round(first - fault.began, 2),
        "old_wrote_s": None if not newer else round(old or 0.0, 2),
        "rejoin_s": None if took is None else round(took, 1), "rejoin": method,
        "failovers": len(newer), "expect": mode_expect,
        "unwanted": unwanted(len(newer), mode_expect, fault.unwanted, fault.caused),
        "note": fault.note,
    }


def run(args: argparse.Namespace) -> None:
    from tests.catalogue import CATALOGUE, by_name

    scenarios = [by_name(s) for s in args.only.split(",")] if args.only else CATALOGUE
    head = {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "pgha", "tests")),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    RESULTS.parent.mkdir(exist_ok=True)
    for mode in args.modes.split(","):
        slots = [Slot(system, mode) for system in args.systems.split(",")]
        try:
            for _ in range(args.runs):
                for scenario in scenarios:
                    for slot in slots:
                        t0 = time.monotonic()
                        try:
                            row = one(slot, scenario)
                        except Exception as exc:  # noqa: BLE001 - a lab that did not heal is a result too
                            traceback.print_exc()
                            row = {"note": f"did not heal: {type(exc).__name__}: {str(exc)[:2000]}", "broken": True}
                            slot.close()
                        row = {**head, "system": slot.system, "mode": mode, "scenario": scenario.name,
                               "seconds": round(time.monotonic() - t0), **row}
                        with RESULTS.open("a") as out:
                            out.write(json.dumps(row) + "\n")
                        print(json.dumps(row), flush=True)
        finally:
            for slot in slots:
                slot.close()
    from bench.matrix_table import write_table

    write_table(RESULTS)


def main(argv: list[str] | None = None) -> None:
    global RESULTS  # noqa: PLW0603 - one run, one file
    sys.path.insert(0, str(ROOT))  # tests/ holds the lab and the catalogue
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs to add per cell")
    ap.add_argument("--only", default="", help="scenario names, comma-separated (default: the whole catalogue)")
    ap.add_argument("--systems", default="pgha,patroni")
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--table", action="store_true", help="only regenerate docs/verification.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the JSON lines file (a trial run's own)")
    args = ap.parse_args(argv)
    RESULTS = args.results
    if args.table:
        from bench.matrix_table import write_table

        write_table(RESULTS)
        return
    from pgha.testing.netlab import why_not_available

    # Stopped with SIGTERM, it still tears its labs down (namespaces, processes, cgroups).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    problem = why_not_available()
    if problem:
        sys.exit(problem)
    run(args)


if __name__ == "__main__":
    main()
