"""Idle cost, pgha and Patroni 4.1.5 side by side in one run (a benchmark, not a test): each runs
a 3-node cluster on its own single-member etcd, both at the same timing, both idle. Reports the
agents' resident (RSS) and proportional (PSS) memory and CPU, and the requests per second that
each etcd serves (its own gRPC counters, ``grpc_server_started_total``), over one window.

    PYTHONPATH=. .venv/bin/python bench/idle.py [--ttl 30 --loop-wait 10 --retry-timeout 10] [--window 30]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from pgha.testing.patroni import VERSION, PatroniCluster
from bench.procmem import memory_mib
from pgha.testing import EtcdCluster, LocalCluster

_STARTED = re.compile(r'^grpc_server_started_total\{([^}]*)\} (\S+)$', re.M)


def etcd_calls(url: str) -> Counter[str]:
    """RPCs started so far, per method."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    out: Counter[str] = Counter()
    for labels, value in _STARTED.findall(text):
        method = re.search(r'grpc_method="([^"]+)"', labels)
        out[method.group(1) if method else "?"] += int(float(value))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def measure(name: str, etcd_url: str, pids: list[int], window: float,
            helpers: list[int] | None = None) -> dict[str, object]:
    """``helpers``: processes of the agents' own (pgha's fence) whose CPU counts, not their memory."""
    helpers = helpers or []
    calls0, cpu0 = etcd_calls(etcd_url), sum(cpu_seconds(p) for p in pids)
    return {"name": name, "etcd_url": etcd_url, "pids": pids, "calls0": calls0, "cpu0": cpu0, "t0": time.monotonic(),
            "helpers": helpers, "hcpu0": sum(cpu_seconds(p) for p in helpers)}


def finish(m: dict[str, object]) -> dict[str, object]:
    elapsed = time.monotonic() - float(m["t0"])  # type: ignore[arg-type]
    calls = etcd_calls(str(m["etcd_url"]))
    calls.subtract(m["calls0"])  # type: ignore[arg-type]
    pids: list[int] = m["pids"]  # type: ignore[assignment]
    mem = [memory_mib(p) for p in pids]
    cpu = (sum(cpu_seconds(p) for p in pids) - float(m["cpu0"])) / elapsed / len(pids) * 100  # type: ignore[arg-type]
    helpers: list[int] = m["helpers"]  # type: ignore[assignment]
    hcpu = (sum(cpu_seconds(p) for p in helpers) - float(m["hcpu0"])) / elapsed / len(pids) * 100  # type: ignore[arg-type]
    return {"name": m["name"], "rps": sum(calls.values()) / elapsed, "by_method": +calls,
            "rss": statistics.median(r for r, _ in mem), "pss": statistics.median(p for _, p in mem), "cpu": cpu,
            "with_helpers": cpu + hcpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ttl", type=int, default=30)
    ap.add_argument("--loop-wait", type=float, default=10)
    ap.add_argument("--retry-timeout", type=float, default=10)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--heartbeat-interval", type=float, default=1.0,
                    help="pgha's availability heartbeat (0: off), to see what it costs")
    ap.add_argument("--settle", type=float, default=15, help="idle time before the window opens")
    args = ap.parse_args()
    dcs = {"ttl": args.ttl, "loop_wait": args.loop_wait, "retry_timeout": args.retry_timeout}
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-idle-"))
    base.chmod(0o755)
    ours = LocalCluster(base / "pgha", dcs={**dcs, "heartbeat_interval": args.heartbeat_interval})
    etcd = EtcdCluster(base, 1)
    theirs: PatroniCluster | None = None
    try:
        ours.start()
        etcd.start()
        theirs = PatroniCluster(base / "patroni", etcd.hosts, dcs)
        theirs.start()
        time.sleep(args.settle)
        pgha_pids = [n.proc.pid for n in ours.nodes if n.proc is not None]
        fences = [p for p in (n.fence_pid() for n in ours.nodes) if p is not None]
        started = [measure("pgha", ours.etcd.members[0].client_url, pgha_pids, args.window, fences),
                   measure(f"Patroni {VERSION}", etcd.members[0].client_url, theirs.pids(), args.window)]
        time.sleep(args.window)
        rows = [finish(m) for m in started]
    finally:
        if theirs is not None:
            theirs.stop()
        etcd.stop()
        ours.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nidle 3-node clusters, ttl {args.ttl} / loop_wait {args.loop_wait} / retry_timeout "
          f"{args.retry_timeout}, pgha heartbeat every {args.heartbeat_interval} s, {args.window:.0f} s window "
          f"after {args.settle:.0f} s settling")
    print(f"{'':16} {'etcd req/s':>10} {'agent RSS MiB':>14} {'agent PSS MiB':>14} {'CPU % / agent':>14} "
          f"{'+ fence':>8}")
    for r in rows:
        print(f"{r['name']:16} {r['rps']:10.2f} {r['rss']:14.1f} {r['pss']:14.1f} {r['cpu']:14.2f} "
              f"{r['with_helpers']:8.2f}")
    p, q = rows
    print(f"ratios pgha/Patroni: etcd requests {float(p['rps']) / max(float(q['rps']), 1e-9):.2f}, "  # type: ignore[arg-type]
          f"RSS {float(p['rss']) / float(q['rss']):.2f}, PSS {float(p['pss']) / float(q['pss']):.2f}")  # type: ignore[arg-type]
    for r in rows:
        print(f"  {r['name']} etcd calls by method: {dict(r['by_method'])}")  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
