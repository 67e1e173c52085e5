"""A Jepsen-style history checker for pgha: concurrent clients append unique ids to a few rows
through HAProxy while faults are injected; afterwards the final rows are checked against every
acknowledged, failed and unknown operation.

- lost: acknowledged ids missing from the final state (must be 0 in synchronous mode);
- forks: two acknowledged results of one row where neither is a prefix of the other, and both
  branches were acknowledging writes at the same time (two writable primaries; must be 0 in every
  mode). A branch that stopped before the other began is a failover that lost writes: those
  writes are counted as lost, not as a fork;
- late writes (forks too): a write that a node executed after another node executed its first
  write as primary on a newer timeline, sent by its client after that first write too. Clients that write straight to each node's Postgres (as
  libpq multi-host clients and poolers do) find these where HAProxy hides them. Both forks and
  late writes are judged by the server's clock when the statement ran (one host, one clock), not
  by when the client heard back: a link that comes back delivers an acknowledgement the network
  held, and that is a delayed acknowledgement (counted apart), not a second writer. Likewise a
  statement its client sent before the newer timeline's first write, executed after it (a whole
  node frozen and thawed: the statement waited in the frozen backend's socket), was in flight
  across the fault: counted apart (``inflight``), and lost in asynchronous mode;
- phantoms: ids whose operation definitely failed but which appear.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pgerr

from pgha.testing import HAProxy, LocalCluster, Node, http_request, wait_for

ROWS = 4
FAULTS = ("kill_primary_node", "kill_primary_postgres", "sigstop_primary_agent", "switchover", "kill_sync_standby")


@dataclass
class Op:
    id: int
    key: int
    outcome: str  # ok | failed | unknown
    result: tuple[int, ...] = ()
    at: float = 0.0  # when it was acknowledged (monotonic)
    node: str = ""  # the address of the server that acknowledged it
    timeline: int = 0  # the timeline it was written on
    ran: float = 0.0  # when the server executed it (its wall clock); 0: unknown, use ``at``
    sent: float = 0.0  # when its client sent it (the same host's wall clock); 0: unknown, use ``executed``

    @property
    def executed(self) -> float:
        return self.ran or self.at

    @property
    def began(self) -> float:
        return self.sent or self.executed


@dataclass
class Report:
    ops: int
    acknowledged: int
    failed: int
    unknown: int
    lost: list[int]
    forks: list[tuple[int, tuple[int, ...], tuple[int, ...]]]
    phantoms: list[int]
    faults: list[str] = field(default_factory=list)
    late: list[tuple[int, str, int]] = field(default_factory=list)  # (op id, node, timeline)
    delayed: list[tuple[int, str, int]] = field(default_factory=list)  # late to the client only
    inflight: list[tuple[int, str, int]] = field(default_factory=list)  # sent before, executed after

    def summary(self) -> str:
        return (f"{self.ops} ops ({self.acknowledged} ok, {self.failed} failed, {self.unknown} unknown), "
                f"{len(self.faults)} faults; lost {len(self.lost)}, forks {len(self.forks)}, "
                f"late writes {len(self.late)}, in flight {len(self.inflight)}, delayed acks {len(self.delayed)}, "
                f"phantoms {len(self.phantoms)}")


def dsn(port: int, host: str = "127.0.0.1") -> str:
    return (f"host={host} port={port} user=postgres password=supersecret dbname=postgres connect_timeout=2 "
            "keepalives_idle=2 keepalives_interval=1 keepalives_count=2")


# The timeline a primary writes on, from the name of its current WAL file (right after a promotion,
# unlike the checkpoint's).
APPEND = ("UPDATE reg SET v = v || %s WHERE k = %s RETURNING v, host(inet_server_addr()), "
          "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, "
          "extract(epoch FROM clock_timestamp())::float8")


class Client(threading.Thread):
    def __init__(self, n: int, port: int, stop: threading.Event, ops: list[Op], lock: threading.Lock,
                 host: str = "127.0.0.1") -> None:
        super().__init__(daemon=True)
        self.n, self.port, self.host, self.halt, self.ops, self.lock = n, port, host, stop, ops, lock
        self.rng = random.Random(n)

    def record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        seq = 0
        while not self.halt.is_set():
            if conn is None:
                try:
                    conn = psycopg.connect(dsn(self.port, self.host), autocommit=True)
                except psycopg.Error:
                    time.sleep(0.05)
                    continue
            seq += 1
            op_id = self.n * 1_000_000 + seq
            key = self.rng.randrange(ROWS)
            try:
                sent = time.time()
                row = conn.execute(APPEND, ([op_id], key)).fetchone()
                assert row is not None
                self.record(Op(op_id, key, "ok", tuple(row[0]), time.monotonic(), str(row[1]), int(row[2]),
                               float(row[3]), sent))
            except (pgerr.ReadOnlySqlTransaction, pgerr.CannotConnectNow, pgerr.AdminShutdown) as exc:
                # refused by the server before any change: definitely not committed...
                # ...except an admin shutdown, which can hit a commit in flight
                self.record(Op(op_id, key, "unknown" if isinstance(exc, pgerr.AdminShutdown) else "failed"))
                conn.close()
                conn = None
                time.sleep(0.05)  # a client of a replica asks again, not in a tight loop
            except psycopg.Error:
                self.record(Op(op_id, key, "unknown"))  # the connection broke: it may have committed
                try:
                    conn.close()
                except psycopg.Error:
                    pass
                conn = None
                time.sleep(0.02)


def check(ops: list[Op], final: dict[int, tuple[int, ...]], faults: list[str]) -> Report:
    """Linear in the history apart from comparing results of neighbouring length (a split-brain's
    thousands of acknowledgements are checked in seconds)."""
    rows = {k: set(ids) for k, ids in final.items()}
    present = set().union(*rows.values()) if rows else set()
    lost = [o.id for o in ops if o.outcome == "ok" and o.id not in rows.get(o.key, ())]
    phantoms = [o.id for o in ops if o.outcome == "failed" and o.id in present]
    forks = []
    for key in range(ROWS):
        acked = [o for o in ops if o.outcome == "ok" and o.key == key]
        results = sorted({o.result for o in acked}, key=len)
        judged: set[tuple[tuple[int, ...], frozenset[int | None]]] = set()
        for a, b in zip(results, results[1:]):
            if b[: len(a)] == a:
                continue
            p = _common(a, b)
            # One split (the common prefix and the two ids after it) is judged once: a split-brain's
            # results alternate between its branches, and every neighbouring pair names the same split.
            split = (a[:p], frozenset({a[p] if p < len(a) else None, b[p]}))
            if split in judged:
                continue
            judged.add(split)
            if _overlap(acked, a[: p + 1], b[: p + 1]):
                forks.append((key, a, b))
    executed = late_writes(ops, lambda o: o.executed)
    late = late_writes(ops, lambda o: o.executed, lambda o: o.began)
    known, new = set(executed), set(late)
    return Report(len(ops), sum(o.outcome == "ok" for o in ops), sum(o.outcome == "failed" for o in ops),
                  sum(o.outcome == "unknown" for o in ops), lost, forks, phantoms, faults, late,
                  [w for w in late_writes(ops, lambda o: o.at) if w not in known],
                  [w for w in executed if w not in new])


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The length of the longest common prefix (by bisection: slices compare at C speed)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _overlap(acked: list[Op], head_a: tuple[int, ...], head_b: tuple[int, ...]) -> bool:
    """Whether both branches (the results starting with each head) acknowledged writes at once:
    each had a write sent after the other had executed one."""
    branch_a = [o for o in acked if o.result[: len(head_a)] == head_a]
    branch_b = [o for o in acked if o.result[: len(head_b)] == head_b]
    return bool(branch_a and branch_b and min(o.executed for o in branch_a) <= max(o.began for o in branch_b)
                and min(o.executed for o in branch_b) <= max(o.began for o in branch_a))


def late_writes(ops: list[Op], when: Callable[[Op], float],
                began: Callable[[Op], float] | None = None) -> list[tuple[int, str, int]]:
    """Writes that a node took, by ``when`` (and, given ``began``, whose statement began by it),
    after another node took its first write on a newer timeline: for a while, two nodes took writes."""
    first: dict[tuple[str, int], float] = {}
    for o in ops:
        if o.outcome == "ok" and o.node and o.timeline:
            first[(o.node, o.timeline)] = min(when(o), first.get((o.node, o.timeline), when(o)))
    return [(o.id, o.node, o.timeline) for o in ops
            if o.outcome == "ok" and o.node and o.timeline
            and any(n != o.node and tl > o.timeline and at < when(o) and (began is None or at < began(o))
                    for (n, tl), at in first.items())]


def _sync_standby(c: LocalCluster, leader: Node) -> Node | None:
    names = (leader.status() or {}).get("synchronous_standbys") or []
    return c.node(names[0]) if names else next((n for n in c.nodes if n is not leader), None)


def inject(c: LocalCluster, fault: str, ttl: float) -> None:
    leader = c.leader(30)
    if fault == "kill_primary_node":
        leader.signal_agent(signal.SIGKILL)
        leader.kill_postgres(signal.SIGKILL)
        try:
            wait_for("a new primary", lambda: any(n.health("/primary") == 200 for n in c.nodes if n is not leader),
                     ttl + 15)
        except TimeoutError:
            pass  # nobody could be proven to hold every commit: the node's return must heal it
        leader.start()
    elif fault == "kill_primary_postgres":
        leader.kill_postgres(signal.SIGKILL)
    elif fault == "sigstop_primary_agent":
        leader.signal_agent(signal.SIGSTOP)
        time.sleep(ttl + 2)
        leader.signal_agent(signal.SIGCONT)
    elif fault == "switchover":
        http_request("POST", leader.api + "/switchover", {"leader": leader.name})
    elif fault == "kill_sync_standby":
        victim = _sync_standby(c, leader)
        if victim is not None:
            victim.signal_agent(signal.SIGKILL)
            victim.kill_postgres(signal.SIGKILL)
            time.sleep(1.5)
            victim.start()
    else:
        raise ValueError(fault)


def run(c: LocalCluster, proxy: HAProxy, cycles: int, clients: int = 4, seed: int = 1,
        log: Callable[[str], None] = lambda _: None) -> Report:
    """Bootstrap the rows, run the clients through ``cycles`` faults, heal, and check."""
    ttl = float(c.dcs["ttl"])
    leader = c.leader()
    with psycopg.connect(leader.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS reg (k int PRIMARY KEY, v int[] NOT NULL DEFAULT '{}')")
        conn.execute("INSERT INTO reg (k) SELECT g FROM generate_series(0, %s) g ON CONFLICT DO NOTHING", (ROWS - 1,))
    ops: list[Op] = []
    lock = threading.Lock()
    stop = threading.Event()
    workers = [Client(i + 1, proxy.write_port, stop, ops, lock) for i in range(clients)]
    for w in workers:
        w.start()
    rng = random.Random(seed)
    faults = []
    try:
        time.sleep(1.0)
        for cycle in range(cycles):
            fault = FAULTS[cycle % len(FAULTS)] if cycle < len(FAULTS) else rng.choice(FAULTS)
            t0 = time.monotonic()
            inject(c, fault, ttl)
            c.wait_healthy(90)
            if c.dcs.get("synchronous_mode"):
                wait_for("a synchronous standby recorded",
                         lambda: (c.leader(30).status() or {}).get("synchronous_standbys"), 30)
            wait_for("writes acknowledged after the fault",
                     lambda: sum(o.outcome == "ok" for o in ops[-50:]) > 10, 60, 0.1)
            faults.append(fault)
            log(f"cycle {cycle + 1}: {fault} healed in {time.monotonic() - t0:.1f} s ({len(ops)} ops so far)")
            time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join(15)
    leader = c.leader(60)
    with psycopg.connect(leader.dsn(), autocommit=True) as conn:
        final = {k: tuple(v) for k, v in conn.execute("SELECT k, v FROM reg").fetchall()}
    with lock:
        return check(list(ops), final, faults)


def regressions(ops: list[Op]) -> list[tuple[int, int, int]]:
    """Writes acknowledged on an older timeline than one a client was already acknowledged on: a
    client saw the cluster go back in time. (op id, its timeline, the newest seen before it.)
    Judged by when the server ran each write, as forks and late writes are: a reply the network
    held (a link down, then back) reaches its client after others were acknowledged on the newer
    timeline, but its write came before the fork, and it is a delayed acknowledgement (counted
    apart), not the cluster going back."""
    newest, out = 0, []
    for o in sorted((o for o in ops if o.outcome == "ok" and o.timeline), key=lambda o: o.executed):
        if o.timeline < newest:
            out.append((o.id, o.timeline, newest))
        newest = max(newest, o.timeline)
    return out


@dataclass(frozen=True)
class Stale:
    """A read that missed ``op``, acknowledged ``age`` seconds before, served by the Postgres at
    ``server`` (its ``address:port``), in recovery or not (not: an old primary on its own branch)."""

    op: int
    age: float
    server: str
    in_recovery: bool


class Reader(threading.Thread):
    """Reads through the read port what was acknowledged ``bound`` seconds or more before: a write
    missing there is a stale read (a replica serving reads that far behind, or on an old branch)."""

    def __init__(self, port: int, stop: threading.Event, ops: list[Op], lock: threading.Lock,
                 bound: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.halt, self.ops, self.lock, self.bound = port, stop, ops, lock, bound
        self.reads = 0
        self.stale: list[Stale] = []

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.halt.wait(0.02):
            edge = time.monotonic() - self.bound
            with self.lock:
                op = next((o for o in reversed(self.ops) if o.outcome == "ok" and o.at <= edge), None)
            try:
                conn = conn or psycopg.connect(dsn(self.port), autocommit=True)
                if op is None:
                    continue
                row = conn.execute("SELECT (SELECT v FROM reg WHERE k = %s), "
                                   "host(inet_server_addr()) || ':' || inet_server_port(), pg_is_in_recovery()", (op.key,)).fetchone()
            except psycopg.Error:
                conn = None
                time.sleep(0.05)
                continue
            self.reads += 1
            if row is not None and (row[0] is None or op.id not in row[0]):
                self.stale.append(Stale(op.id, time.monotonic() - op.at, row[1] or "local", bool(row[2])))
