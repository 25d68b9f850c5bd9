"""SQLite backend: one file in WAL mode, the default store.

One connection serves all threads behind a lock: SQLite writes are serialized anyway,
and a request's database work is small next to its scoring. `synchronous=FULL` makes
every committed turn and feedback event survive a power cut, not only a killed process.
Several processes may share the file; they wait on each other (busy timeout).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from whyrec.errors import WhyrecError
from whyrec.store.base import Store

BUSY_TIMEOUT_MS = 10_000


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.target = self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise WhyrecError(f"cannot open session database {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _lock_schema(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE already holds the database's write lock."""

    def close(self) -> None:
        with self._lock:
            self._db.close()
