"""Resident (RSS) and proportional (PSS) memory of a process, from /proc."""

from __future__ import annotations

from pathlib import Path


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0])
    return fields["Rss"] / 1024, fields["Pss"] / 1024
