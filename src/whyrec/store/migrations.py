"""Versioned schema migrations, shared by SQLite and PostgreSQL.

Each migration is a list of statements written once with two placeholders for the few
types the dialects spell differently. The applied versions are recorded in
`whyrec_schema`; a database newer than this code is refused rather than misread.
Version 1 is the schema the first session store created (`CREATE ... IF NOT EXISTS`),
so databases written by earlier whyrec versions upgrade in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from whyrec.store.tokens import DIGEST_PREFIX, token_digest

TYPES = {
    "sqlite": {"autoid": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    "postgres": {"autoid": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    rewrite: Callable[[Any, Any], None] | None = None
    """Row changes SQL cannot spell in both dialects: called with (store, connection)
    inside the migration's transaction, after the statements."""

    def sql(self, dialect: str) -> list[str]:
        return [s.format(**TYPES[dialect]) for s in self.statements]


MIGRATIONS = (
    Migration(
        1,
        "sessions and their messages",
        (
            """CREATE TABLE IF NOT EXISTS sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT,
                token TEXT NOT NULL,
                created {real} NOT NULL,
                updated {real} NOT NULL,
                state TEXT NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS messages (
                id {autoid},
                session_id TEXT NOT NULL REFERENCES sessions(id),
                turn INTEGER NOT NULL,
                role TEXT NOT NULL,
                text TEXT NOT NULL,
                payload TEXT,
                created {real} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id)",
        ),
    ),
    Migration(
        2,
        "turn counter on sessions (concurrent turns conflict) and durable feedback",
        (
            "ALTER TABLE sessions ADD COLUMN turn INTEGER NOT NULL DEFAULT 0",
            """UPDATE sessions SET turn = COALESCE(
                (SELECT MAX(m.turn) FROM messages m WHERE m.session_id = sessions.id), 0)""",
            """CREATE TABLE feedback (
                id {autoid},
                user_id TEXT,
                session_id TEXT,
                item_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                rating {real},
                event_time {real} NOT NULL,
                received {real} NOT NULL,
                source TEXT
            )""",
            "CREATE INDEX feedback_by_user ON feedback(user_id, id)",
            "CREATE INDEX feedback_by_session ON feedback(session_id, id)",
        ),
    ),
)


def _digest_plain_tokens(store: Any, db: Any) -> None:
    rows = store._run(db, "SELECT id, token FROM sessions").fetchall()
    for session_id, token in rows:
        if not token.startswith(DIGEST_PREFIX):
            store._run(
                db, "UPDATE sessions SET token = ? WHERE id = ?", (token_digest(token), session_id)
            )


MIGRATIONS += (
    Migration(3, "session tokens kept as SHA-256 digests", (), rewrite=_digest_plain_tokens),
)

LATEST_VERSION = MIGRATIONS[-1].version
