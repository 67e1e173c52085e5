"""REST benchmark: GET /primary under a bounded loopback load while the agent runs its loop, and
the agent's resident memory and CPU when idle. Not a test: nothing here asserts a number.

Load: wrk, 1 thread, 4 connections, 10 s, against the leader's /primary (HTTP keep-alive).
Lease health under load: the longest gap between two successful lease renewals and the count of
failed renewals, read from /metrics before and after.

    .venv/bin/python bench/rest.py [--duration 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pgha.testing import LocalCluster, http_request

PATRONI = {"rps": 1456.0, "p50_ms": 2.0, "p99_ms": 4.8, "rss_mib": 47.7}


def metric(api: str, name: str) -> float:
    text = http_request("GET", api + "/metrics")[1]
    m = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def to_ms(v: str) -> float:
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()  # type: ignore[union-attr]
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, duration: int) -> tuple[float, float, float]:
    out = subprocess.run(["wrk", "-t1", "-c4", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def proc_stats(pid: int) -> tuple[float, float]:
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime in clock ticks
    return rss_kib / 1024, cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-rest-"))
    c = LocalCluster(base, dcs={"ttl": 10, "loop_wait": 1, "retry_timeout": 2})
    try:
        c.start()
        leader = c.leader()
        assert leader.proc is not None
        time.sleep(3)
        rss0, cpu0 = proc_stats(leader.proc.pid)
        time.sleep(10)
        rss1, cpu1 = proc_stats(leader.proc.pid)
        idle_cpu = (cpu1 - cpu0) / 10 * 100
        failures0 = metric(leader.api, "pgha_lease_renewal_failures_total")
        results = []
        for i in range(args.runs):
            rps, p50, p99 = wrk(leader.api + "/primary", args.duration)
            results.append((rps, p50, p99))
            print(f"run {i + 1}: {rps:8.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True)
        gap = metric(leader.api, "pgha_lease_renewal_max_gap_seconds")
        failures = metric(leader.api, "pgha_lease_renewal_failures_total") - failures0
        rps = statistics.median(r[0] for r in results)
        p50 = statistics.median(r[1] for r in results)
        p99 = statistics.median(r[2] for r in results)
        print(f"""
GET /primary, wrk -t1 -c4 -d{args.duration}s, median of {args.runs} runs (Patroni 4.1.5 reference in brackets)
  throughput   {rps:8.0f} req/s   ({PATRONI['rps']:.0f}; ratio {rps / PATRONI['rps']:.1f}x)
  latency p50  {p50:8.2f} ms      ({PATRONI['p50_ms']})
  latency p99  {p99:8.2f} ms      ({PATRONI['p99_ms']})
  lease renewals under load: longest gap {gap:.2f} s (loop_wait 1 s, ttl 10 s), failed renewals {failures:.0f}
agent idle: {rss1:.1f} MiB resident ({PATRONI['rss_mib']} MiB), {idle_cpu:.1f}% of one core over 10 s""")
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
