"""What an old primary's diverged WAL holds, read with ``pg_waldump`` (installed with
PostgreSQL): its committed transactions, their commit times, and the rows each relation gained,
changed or lost. Parsing is pure (``summarize``); ``dump`` runs the tool."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_RECORD = re.compile(r"rmgr: (\w+)\s.*?tx:\s+(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), .*?desc: (.*)$")
_REL = re.compile(r"blkref #0: rel (\d+)/(\d+)/(\d+)")
_COMMIT = re.compile(r"^COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)")
_NTUPLES = re.compile(r"ntuples: (\d+)")
# Heap records and the row change each stands for.
_OPS = {"INSERT": "insert", "INSERT+INIT": "insert", "UPDATE": "update", "UPDATE+INIT": "update",
        "HOT_UPDATE": "update", "HOT_UPDATE+INIT": "update", "DELETE": "delete"}


@dataclass(frozen=True)
class Diverged:
    transactions: int = 0
    first_commit: str | None = None  # as pg_waldump prints it (UTC)
    last_commit: str | None = None
    end_lsn: str | None = None  # the last record read
    # (tablespace, database, relfilenode) -> {"insert": n, "update": n, "delete": n}
    relations: dict[tuple[int, int, int], dict[str, int]] = field(default_factory=dict)


def summarize(lines: Iterable[str]) -> Diverged:
    """Count only what committed: an aborted transaction's rows were never visible."""
    pending: dict[int, list[tuple[tuple[int, int, int], str, int]]] = {}
    relations: dict[tuple[int, int, int], dict[str, int]] = {}
    commits: list[str] = []
    end = None
    for line in lines:
        m = _RECORD.search(line)
        if m is None:
            continue
        rmgr, xid, end, desc = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if rmgr in ("Heap", "Heap2"):
            op, rel = desc.split(" ", 1)[0], _REL.search(line)
            kind = "insert" if rmgr == "Heap2" and op.startswith("MULTI_INSERT") else _OPS.get(op) if rmgr == "Heap" else None
            if kind is not None and rel is not None:
                n = int(t.group(1)) if kind == "insert" and (t := _NTUPLES.search(desc)) else 1
                key = (int(rel.group(1)), int(rel.group(2)), int(rel.group(3)))
                pending.setdefault(xid, []).append((key, kind, n))
        elif rmgr == "Transaction":
            c = _COMMIT.match(desc)
            if c is not None:
                commits.append(c.group(1))
                for key, kind, n in pending.pop(xid, []):
                    counts = relations.setdefault(key, {"insert": 0, "update": 0, "delete": 0})
                    counts[kind] += n
            elif desc.startswith("ABORT"):
                pending.pop(xid, None)
    return Diverged(len(commits), commits[0] if commits else None, commits[-1] if commits else None, end, relations)
