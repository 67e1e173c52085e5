"""How fast a restarted primary agent is back in charge (a benchmark, not a test): the agent of
the primary is SIGKILLed (its Postgres and fence keep running), started again, and from its exec
this measures when the leader key is bound to its new lease and when its fence's deadline is
written again (re-armed). Idle, and under CPU hogs (one busy process per core, plus two).

    PYTHONPATH=. .venv/bin/python bench/start.py [--runs 5] [--hogs 4]

Idle memory, CPU and etcd requests beside Patroni: bench/idle.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from pgha.testing import FAST, LocalCluster, Node, wait_for


def leader_lease(etcd: str, key: str) -> tuple[str | None, int]:
    """The leader key's value and lease (etcd's v3 JSON gateway)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(f"http://{etcd}/v3/kv/range", body, {"Content-Type": "application/json"})
    kvs = json.loads(urllib.request.urlopen(req, timeout=2).read()).get("kvs") or []
    if not kvs:
        return None, 0
    return base64.b64decode(kvs[0]["value"]).decode(), int(kvs[0].get("lease", 0))


@contextmanager
def hogs(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def one(c: LocalCluster, leader: Node) -> tuple[float, float]:
    etcd, key = c.etcd.hosts[0], f"/pgha/{c.scope}/leader"
    fence_file = Path(f"{leader.data_dir}.fence")
    _, old_lease = leader_lease(etcd, key)
    old_deadline = fence_file.read_text()
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()
    t0 = time.monotonic()
    leader.start()
    took_key = rearmed = None
    while (took_key is None or rearmed is None) and time.monotonic() - t0 < 30:
        now = time.monotonic()
        if took_key is None:
            holder, lease = leader_lease(etcd, key)
            if holder == leader.name and lease not in (0, old_lease):
                took_key = now - t0
        if rearmed is None and fence_file.exists() and fence_file.read_text() != old_deadline:
            rearmed = now - t0
        time.sleep(0.002)
    assert took_key is not None and rearmed is not None, "the restarted agent did not take over"
    wait_for("primary again", lambda: leader.health("/primary") == 200 or None, 30)
    time.sleep(1.0)
    return took_key, rearmed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hogs", type=int, default=4)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pgha-bench-start-"))
    c = LocalCluster(base, nodes=2, dcs=FAST)
    try:
        c.start()
        leader = c.leader()
        for label, load in (("idle", 0), (f"{args.hogs} CPU hogs", args.hogs)):
            runs = []
            with hogs(load):
                for _ in range(args.runs):
                    runs.append(one(c, leader))
            keys, fences = [r[0] for r in runs], [r[1] for r in runs]
            print(f"{label:12} exec -> leader key on the new lease: median {statistics.median(keys):.3f} s "
                  f"(max {max(keys):.3f}); exec -> fence re-armed: median {statistics.median(fences):.3f} s "
                  f"(max {max(fences):.3f}); {args.runs} runs", flush=True)
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
