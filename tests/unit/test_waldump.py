"""Reading pg_waldump's output: only committed transactions count, rows per relation."""

from __future__ import annotations

from pgha.postgres.waldump import summarize

LINES = """\
rmgr: Heap        len (rec/tot):     59/    59, tx:        741, lsn: 0/03000060, prev 0/03000028, desc: INSERT off 5 flags 0x08, blkref #0: rel 1663/5/16390 blk 0
rmgr: Heap        len (rec/tot):     72/    72, tx:        741, lsn: 0/03000098, prev 0/03000060, desc: HOT_UPDATE off 2 xmax 741 flags 0x10 ; new off 6 xmax 0, blkref #0: rel 1663/5/16390 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        741, lsn: 0/030000E0, prev 0/03000098, desc: COMMIT 2026-11-28 02:50:01.123456 UTC
rmgr: Heap        len (rec/tot):     59/    59, tx:        742, lsn: 0/03000108, prev 0/030000E0, desc: INSERT off 7 flags 0x08, blkref #0: rel 1663/5/16390 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/03000148, prev 0/03000108, desc: ABORT 2026-11-28 02:50:01.223456 UTC
rmgr: Heap2       len (rec/tot):    120/   120, tx:        743, lsn: 0/03000170, prev 0/03000148, desc: MULTI_INSERT+INIT ntuples: 3, flags 0x02, blkref #0: rel 1663/5/16400 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:        743, lsn: 0/030001E8, prev 0/03000170, desc: DELETE off 1 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/5/16390 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:        743, lsn: 0/03000220, prev 0/030001E8, desc: COMMIT 2026-11-28 02:50:02.5 UTC
rmgr: Heap        len (rec/tot):     59/    59, tx:        744, lsn: 0/03000248, prev 0/03000220, desc: INSERT off 8 flags 0x08, blkref #0: rel 1663/5/16390 blk 0
pg_waldump: error: error in WAL record at 0/3000248: invalid record length at 0/3000290: wanted 24, got 0
"""


def test_committed_rows_per_relation_and_the_commit_times() -> None:
    d = summarize(LINES.splitlines())
    assert d.transactions == 2 and d.first_commit == "2026-11-28 02:50:01.123456" and d.last_commit == "2026-11-28 02:50:02.5"
    assert d.relations == {(1663, 5, 16390): {"insert": 1, "update": 1, "delete": 1},
                           (1663, 5, 16400): {"insert": 3, "update": 0, "delete": 0}}
    assert d.end_lsn == "0/03000248"  # the uncommitted insert at the very end counts for nothing
