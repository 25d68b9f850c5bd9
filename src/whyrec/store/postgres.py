"""PostgreSQL backend (psycopg 3 with a connection pool), chosen by a postgresql:// URL.

Queries and migrations are the SQLite ones (see `base.Store`); only the placeholder
style and the way to get a connection differ. Migrations from several processes
serialize on a transaction-scoped advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from whyrec.errors import WhyrecError
from whyrec.store.base import Store

POOL_SIZE = 8
MIGRATION_LOCK = 0x77687972  # "whyr"


class PostgresStore(Store):
    dialect = "postgres"
    placeholder = "%s"

    def __init__(self, url: str, pool_size: int = POOL_SIZE, timeout: float = 10.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.target = _redact(url)
        try:
            self._pool = ConnectionPool(
                url, min_size=1, max_size=pool_size, timeout=timeout, open=False
            )
            self._pool.open(wait=True, timeout=timeout)
            self.migrate()
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WhyrecError(f"cannot open PostgreSQL database {self.target}: {first}") from None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        with self._pool.connection() as conn:
            yield conn

    def _lock_schema(self, db: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def close(self) -> None:
        self._pool.close()


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
