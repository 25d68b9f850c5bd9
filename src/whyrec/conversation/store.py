"""Sessions and their messages in SQLite, so a restarted process resumes them exactly.

One table of sessions (the dialogue state as JSON) and one of messages. WAL mode lets a
reader (the API's GET) proceed while a turn is being written. Each turn is written in one
transaction: the state and the messages of a turn land together or not at all.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path

from whyrec.errors import NotFoundError, WhyrecError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    token TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    payload TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);
"""


class SessionStore:
    """SQLite-backed session storage (":memory:" for throwaway sessions)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise WhyrecError(
                    f"session database {self.path} has schema {version}, newer than this "
                    f"whyrec's {SCHEMA_VERSION}"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise WhyrecError(f"cannot open session database {self.path}: {exc}") from None

    def create(self, state: dict, user_id: str | None) -> tuple[str, str]:
        """Store a new session; returns (session id, secret token)."""
        session_id = secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        now = time.time()
        self._db.execute(
            "INSERT INTO sessions (id, user_id, token, created, updated, state) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, user_id, token, now, now, json.dumps(state)),
        )
        return session_id, token

    def load(self, session_id: str) -> dict:
        row = self._db.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        return json.loads(row[0])

    def token(self, session_id: str) -> str:
        row = self._db.execute("SELECT token FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        return row[0]

    def save_turn(
        self, session_id: str, state: dict, turn: int, messages: list[tuple[str, str, dict | None]]
    ) -> None:
        """Write the new state and the turn's messages atomically."""
        now = time.time()
        with self._transaction():
            updated = self._db.execute(
                "UPDATE sessions SET state = ?, updated = ? WHERE id = ?",
                (json.dumps(state), now, session_id),
            )
            if updated.rowcount == 0:
                raise NotFoundError(f"no session {session_id!r}")
            self._db.executemany(
                "INSERT INTO messages (session_id, turn, role, text, payload, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (session_id, turn, role, text, json.dumps(payload) if payload else None, now)
                    for role, text, payload in messages
                ],
            )

    def messages(self, session_id: str) -> list[dict]:
        self.load(session_id)
        rows = self._db.execute(
            "SELECT turn, role, text, payload, created FROM messages WHERE session_id = ? "
            "ORDER BY id",
            (session_id,),
        ).fetchall()
        return [
            {"turn": t, "role": r, "text": x, "payload": json.loads(p) if p else None, "created": c}
            for t, r, x, p, c in rows
        ]

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    def close(self) -> None:
        self._db.close()
