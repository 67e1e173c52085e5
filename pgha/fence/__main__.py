"""``python -m pgha.fence DATA_DIR``: watch ``DATA_DIR.fence`` and SIGKILL the postmaster of
DATA_DIR and every backend once the deadline in it has passed. Imports nothing of pgha but the
standard-library-only ``pgha.postgres.processes``, so it starts in a few milliseconds and needs
little memory."""

from __future__ import annotations

import os
import signal
import sys
import time

from pgha.postgres import processes

TICK = 0.01  # seconds between two looks at the clock, near the deadline
# ... and at the most, far from it. The agent sends SIGUSR1 when it moves the deadline earlier or
# disarms (``pgha.agent.fence``), so this only bounds a lost signal; an idle fence wakes once a second.
LOOK = 1.0


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
    killed = 0
    if pid is not None:
        # The postmaster and every backend at the same instant. Each backend leads a session of
        # its own (a kill of the postmaster's group missed them), and one in the middle of a
        # statement outlives its postmaster long enough to commit and acknowledge it.
        killed = len(processes.kill_tree(pid)) - 1
    with open(data_dir + ".fence.fired", "a") as f:
        f.write(f"{time.time():.3f} pid={pid} backends={killed} late={late * 1000:.1f}ms\n")


def main(data_dir: str) -> int:
    state = data_dir + ".fence"
    # Blocked before the pid is known (SIGUSR1 would otherwise end us), so one sent between two
    # looks stays pending and ends the next wait at once.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
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
        signal.sigtimedwait({signal.SIGUSR1}, min(max(deadline - boottime(), TICK), LOOK))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
