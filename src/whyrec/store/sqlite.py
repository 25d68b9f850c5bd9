"""SQLite backend: one file in WAL mode, the default store.

One connection serves all threads behind a lock: SQLite writes are serialized anyway,
and a request's database work is small next to its scoring. `synchronous=FULL` makes
every committed turn and feedback event survive a power cut, not only a killed process.
Several processes may share the file (`whyrec serve --workers N`). Their writers queue
on an `flock` of a lock file beside the database before BEGIN IMMEDIATE: the kernel wakes
the next writer the moment the lock is free, where SQLite's own busy handler polls with
sleeps of up to 100 ms (measured as a 200+ ms p99 for chat turns with 3 workers). The
busy timeout still covers other programs writing to the file.
"""

from __future__ import annotations

import fcntl
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
        self._lock = threading.RLock()
        self._writers = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._writers = open(f"{self.path}-writer.lock", "a")  # noqa: SIM115
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise WhyrecError(f"cannot open session database {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._writer_turn():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Hold the cross-process writer lock (released by the kernel if we are killed)."""
        if self._writers is None:
            yield
            return
        fcntl.flock(self._writers, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._writers, fcntl.LOCK_UN)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _lock_schema(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE already holds the database's write lock."""

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._writers is not None:
                self._writers.close()
