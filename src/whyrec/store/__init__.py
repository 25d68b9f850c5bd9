"""Durable storage of sessions, their messages and user feedback, behind one interface.

`open_store("sessions.sqlite")` gives SQLite (WAL, the default); `open_store("postgresql://...")`
gives PostgreSQL. Both run the same SQL and the same versioned migrations, so the
conversation, the CLI and the HTTP service never know which database they talk to.
"""

from whyrec.store.base import ConflictError, FeedbackEvent, Store
from whyrec.store.feedback import feedback_frame, read_feedback
from whyrec.store.migrations import LATEST_VERSION
from whyrec.store.sqlite import SQLiteStore


def is_postgres_url(target: str) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def open_store(target: str | None = None) -> Store:
    """A SQLite file path (":memory:" when None) or a postgresql:// URL."""
    if target is not None and is_postgres_url(str(target)):
        from whyrec.store.postgres import PostgresStore

        return PostgresStore(str(target))
    return SQLiteStore(target if target is not None else ":memory:")


__all__ = [
    "LATEST_VERSION",
    "ConflictError",
    "FeedbackEvent",
    "SQLiteStore",
    "Store",
    "feedback_frame",
    "is_postgres_url",
    "open_store",
    "read_feedback",
]
