"""The agent: a thin async shell around ``pgha.core.decide``.

- ``lease``: the lease keeper (renewals on their own cadence, the last-resort guard);
- ``loop``: observe, decide, execute, fold the results into the next snapshot;
- ``execute``: one branch per action, no choices; ``jobs``: the long jobs on Postgres;
- ``service``: wires the parts and the API together and runs them.
"""

from pgha.agent.service import Agent

__all__ = ["Agent"]
