"""Durable storage of sessions, their messages and user feedback, behind one interface.

`open_store("sessions.sqlite")` gives SQLite (WAL, the default); `open_store("postgresql://...")`
gives PostgreSQL. Both run the same SQL and the same versioned migrations, so the
conversation, the CLI and the HTTP service never know which database they talk to.
"""

from whyrec.errors import WhyrecError
from whyrec.store.base import ConflictError, FeedbackEvent, Store
from whyrec.store.feedback import feedback_frame, read_feedback
from whyrec.store.migrations import LATEST_VERSION
from whyrec.store.sqlite import SQLiteStore


def is_postgres_url(target: str) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def sqlite_path(target: str) -> str:
    """The SQLite file a target names: a plain path, or the URL form SQLAlchemy users know
    (`sqlite:///relative.db`, `sqlite:////absolute.db`; `sqlite://` alone is in memory).
    Any other `scheme://` is refused, never taken for a folder named after the scheme."""
    target = str(target)
    if target.startswith("sqlite:"):
        rest = target.removeprefix("sqlite:")
        if not rest.startswith("//"):
            raise WhyrecError(f"{target!r}: write SQLite URLs as sqlite:///file.sqlite")
        path = rest[2:]
        if path in ("", "/", "/:memory:"):
            return ":memory:"
        if not path.startswith("/"):
            raise WhyrecError(f"{target!r}: a SQLite URL has no host; use sqlite:///file.sqlite")
        return path[1:]
    if "://" in target:
        scheme = target.split("://", 1)[0]
        raise WhyrecError(
            f"unsupported database URL scheme {scheme!r}: give a SQLite file, "
            "sqlite:///file.sqlite or postgresql://..."
        )
    if not target.strip():
        raise WhyrecError("the database path is empty")
    return target


def open_store(target: str | None = None) -> Store:
    """A SQLite file path or sqlite:/// URL (":memory:" when None) or a postgresql:// URL."""
    if target is not None and is_postgres_url(str(target)):
        from whyrec.store.postgres import PostgresStore

        return PostgresStore(str(target))
    return SQLiteStore(sqlite_path(target) if target is not None else ":memory:")


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
    "sqlite_path",
]
