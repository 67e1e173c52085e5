"""``python -m pgha.fence DATA_DIR``: watch ``DATA_DIR.fence`` and SIGKILL the postmaster of
DATA_DIR once the deadline in it has passed. Imports nothing of pgha, so it starts in a few
milliseconds and needs little memory."""

from __future__ import annotations

import os
import signal
import sys
import time

TICK = 0.01  # seconds between two looks at the clock, near the deadline
LOOK = 0.05  # ... and at the most, far from it (the agent may move the deadline either way)


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def read_deadline(path: str) -> float | None:
    """The deadline, or None when the fence is disarmed (file gone)."""
    try:
        with open(path) as f:
            return float(f.read().split()[0])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        return -1.0  # unreadable: fail safe, as if the deadline had passed


def postmaster(data_dir: str) -> int | None:
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"postgres" not in f.read():
                return None  # the pid was reused by something else
        return pid
    except (OSError, ValueError):
        return None


def fire(data_dir: str, deadline: float) -> None:
    pid = postmaster(data_dir)
    late = boottime() - deadline
    if pid is not None:
        try:
            # The whole process group when the postmaster leads one (pgha starts it so): its
            # backends go at the same instant and cannot finish one more commit.
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pid = None
    with open(data_dir + ".fence.fired", "a") as f:
        f.write(f"{time.time():.3f} pid={pid} late={late * 1000:.1f}ms\n")


def main(data_dir: str) -> int:
    state = data_dir + ".fence"
    with open(data_dir + ".fence.pid", "w") as f:
        f.write(str(os.getpid()))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only a disarm or SIGKILL ends the fence
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        deadline = read_deadline(state)
        if deadline is None:
            return 0
        if boottime() >= deadline:
            fire(data_dir, deadline)
            try:
                os.unlink(state)  # fired: disarmed until the agent arms it again
            except FileNotFoundError:
                pass
            return 0
        time.sleep(min(max(deadline - boottime(), TICK), LOOK))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
