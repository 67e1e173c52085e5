"""The agent: a thin async shell around ``pgha.core.decide``.

- ``lease``: the lease keeper (renewals on their own cadence, the last-resort guard);
- ``loop``: observe, decide, execute, fold the results into the next snapshot;
- ``execute``: one branch per action, no choices; ``jobs``: the long jobs on Postgres;
- ``service``: wires the parts and the API together and runs them;
- ``quickstart``: a restarted primary's first milliseconds, before any of the above is imported.

Nothing is imported here: ``pgha agent`` loads ``quickstart`` first, alone.
"""

__all__ = ["Agent"]
