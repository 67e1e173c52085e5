"""The one error tree of pgha.

    PghaError
    ├── ConfigError          a config file, environment variable or dynamic config is invalid
    │   └── ConfigTooLarge   a dynamic config over the size limit
    ├── DcsError             etcd could not answer in time (every endpoint tried)
    │   └── DcsAuthError     etcd refused our credentials
    ├── PostgresError        a Postgres command or query failed
    │   ├── PostgresTimeout  the server did not answer in time (it may be hung)
    │   └── WalGone          a starting standby needs WAL removed upstream
    ├── BadRequest           an API request is malformed (HTTP 400; the message says what is wrong)
    └── OperationRefused     an operator request cannot be carried out (the message says why)

Callers import it as ``from pgha import errors as e``.
"""

from __future__ import annotations


class PghaError(Exception):
    """Base of every error pgha raises on purpose."""


class ConfigError(PghaError):
    """Raised when a configuration is invalid; the message names the file, the key and the value."""


class ConfigTooLarge(ConfigError):
    """Raised when a dynamic config would exceed the size stored in etcd; answered with 413."""


class DcsError(PghaError):
    """Raised when etcd did not answer within the call's deadline on any endpoint."""


class DcsAuthError(DcsError):
    """Raised when etcd rejects the configured username/password or client certificate."""


class PostgresError(PghaError):
    """Raised when a Postgres binary exits non-zero or a query on the local instance fails."""


class PostgresTimeout(PostgresError):
    """A statement or connection on Postgres got no answer within its deadline: the server is
    slow or hung, which a refusal (starting up, shutting down) is not."""


class Unopenable(PostgresError):
    """A started postmaster refuses every connection for a reason no waiting cures (a full disk:
    each backend dies writing its relation cache file)."""


class WalGone(PostgresError):
    """A starting standby cannot become consistent: WAL it must replay is gone upstream."""


class BadRequest(PghaError):
    """Raised when an API request's body, field or query is malformed; answered with ``status``
    (400, or 413 for a body too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class OperationRefused(PghaError):
    """Raised when an operator's request is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 412) -> None:
        super().__init__(message)
        self.status = status
