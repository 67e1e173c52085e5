"""The fence: a small process, separate from the agent, that stops the postmaster when the
agent's lease may have run out.

The agent arms it before its Postgres becomes writable and, on every lease renewal, moves its
deadline to the instant the lease could expire (minus a margin). The fence shares nothing with the
agent but a state file: its own process and session, so a frozen (SIGSTOP) or killed agent cannot
freeze or kill it. When the deadline passes it SIGKILLs the postmaster at once (crash recovery
keeps the data safe). The deadline is on CLOCK_BOOTTIME, which keeps counting across a suspend,
so a host that resumes after a pause fences on its first tick.

Files beside the data directory: ``<data_dir>.fence`` (the deadline; removing it disarms and the
fence exits), ``<data_dir>.fence.pid`` and ``<data_dir>.fence.fired`` (one line per firing).
"""
