"""What a drill's history says (pure): acknowledged writes lost, failed writes that appeared
anyway (phantoms), writes acknowledged on an old timeline after a newer one took writes (a fork:
two writable primaries), and the longest time without an acknowledged write."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pgha.drill.writer import Op


@dataclass(frozen=True)
class Verdict:
    acknowledged: int
    lost: tuple[int, ...]
    phantoms: tuple[int, ...]
    forks: tuple[int, ...]
    gap: float  # seconds
    gap_from: float = 0.0  # monotonic: the last acknowledgement before the gap
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.problems


def judge(ops: Sequence[Op], present: Iterable[int], max_gap: float, sync: bool) -> Verdict:
    have = set(present)
    ok = sorted((o for o in ops if o.outcome == "ok"), key=lambda o: o.at)
    lost = tuple(o.id for o in ok if o.id not in have)
    phantoms = tuple(o.id for o in ops if o.outcome == "failed" and o.id in have)
    newest, forks = 0, []
    for o in ok:
        if o.timeline < newest:
            forks.append(o.id)
        newest = max(newest, o.timeline)
    gap, gap_from = 0.0, ok[0].at if ok else 0.0
    for a, b in itertools.pairwise(ok):
        if b.at - a.at > gap:
            gap, gap_from = b.at - a.at, a.at
    problems = []
    if gap > max_gap:
        problems.append(f"write gap {gap:.2f} s exceeds --max-gap {max_gap:g} s")
    if lost and sync:
        problems.append(f"{len(lost)} acknowledged writes lost in synchronous mode")
    if forks:
        problems.append(f"{len(forks)} writes acknowledged on an older timeline after a newer one took writes")
    if phantoms:
        problems.append(f"{len(phantoms)} writes that failed are in the table")
    if not ok:
        problems.append("no write was acknowledged")
    return Verdict(len(ok), lost, phantoms, tuple(forks), gap, gap_from, tuple(problems))
