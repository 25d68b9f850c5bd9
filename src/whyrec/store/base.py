"""The store interface and its SQL implementation, shared by every backend.

A backend only says how to get a connection inside a transaction (`_transaction`) and
how to read without one (`_reading`); every query is written once here with `?`
placeholders. A turn (dialogue state, messages and any feedback it carries) is written
in one transaction, so it lands whole or not at all, and it only lands on the turn it
was computed from: two concurrent turns on one session cannot both win.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from whyrec.errors import NotFoundError, WhyrecError
from whyrec.store.migrations import LATEST_VERSION, MIGRATIONS
from whyrec.store.tokens import token_digest

FEEDBACK_KINDS = ("interaction", "rating", "like", "dislike")


class ConflictError(WhyrecError):
    """A session changed under a request (another turn landed first); retry on a fresh read."""


@dataclass
class FeedbackEvent:
    """One thing a user did with an item, as the service received it.

    `kind` is interaction (watched, bought, clicked), rating (with `rating`), like or
    dislike (from the chat page). `timestamp` is when it happened (seconds since the
    epoch, default: when received); `id` and `received` are set by the store.
    """

    item_id: str
    kind: str = "interaction"
    user_id: str | None = None
    session_id: str | None = None
    rating: float | None = None
    timestamp: float | None = None
    source: str | None = None
    id: int | None = None
    received: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEEDBACK_KINDS:
            raise WhyrecError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)}")
        if self.kind == "rating" and self.rating is None:
            raise WhyrecError("a rating event needs a rating")
        if self.user_id is None and self.session_id is None:
            raise WhyrecError("feedback needs a user_id or a session_id")

    def to_dict(self) -> dict:
        return asdict(self)


class Store(ABC):
    """Sessions (dialogue state as JSON), their messages, and feedback events."""

    dialect: str
    placeholder = "?"
    target: str

    # ----- what a backend provides --------------------------------------------------
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A connection inside a write transaction, committed on success."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection for reads."""

    @abstractmethod
    def _lock_schema(self, db: Any) -> None:
        """Serialize migrations between processes (inside the migration transaction)."""

    @abstractmethod
    def close(self) -> None: ...

    # ----- schema ------------------------------------------------------------------
    def _sql(self, query: str) -> str:
        return query if self.placeholder == "?" else query.replace("?", self.placeholder)

    def _run(self, db: Any, query: str, params: Iterable[Any] = ()) -> Any:
        return db.execute(self._sql(query), tuple(params))

    def migrate(self) -> int:
        """Apply pending migrations in one transaction; returns the schema version."""
        with self._transaction() as db:
            self._lock_schema(db)
            self._run(
                db,
                "CREATE TABLE IF NOT EXISTS whyrec_schema (version INTEGER PRIMARY KEY, "
                "description TEXT NOT NULL, applied {real} NOT NULL)".format(
                    real="REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION"
                ),
            )
            row = self._run(db, "SELECT MAX(version) FROM whyrec_schema").fetchone()
            current = row[0] or 0
            if current > LATEST_VERSION:
                raise WhyrecError(
                    f"the database {self.target} has schema version {current}, newer than "
                    f"this whyrec's {LATEST_VERSION}; upgrade whyrec"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.sql(self.dialect):
                    self._run(db, statement)
                if migration.rewrite is not None:
                    migration.rewrite(self, db)
                self._run(
                    db,
                    "INSERT INTO whyrec_schema (version, description, applied) VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )
        return self.schema_version()

    def schema_version(self) -> int:
        with self._reading() as db:
            return self._run(db, "SELECT MAX(version) FROM whyrec_schema").fetchone()[0] or 0

    # ----- sessions ------------------------------------------------------------------
    def create(self, state: dict, user_id: str | None) -> tuple[str, str]:
        """Store a new session; returns (session id, secret token). Only the token's
        digest is stored: the caller hands the token to the user and forgets it."""
        session_id = secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        now, turn = time.time(), state.get("turn", 0)
        with self._transaction() as db:
            self._run(
                db,
                "INSERT INTO sessions (id, user_id, token, created, updated, state, turn) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, user_id, token_digest(token), now, now, json.dumps(state), turn),
            )
        return session_id, token

    def load(self, session_id: str) -> dict:
        with self._reading() as db:
            row = self._run(db, "SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id!r}")
        return json.loads(row[0])

    def check_token(self, session_id: str, token: str) -> bool:
        """Whether `token` opens this session (constant-time; False for unknown sessions)."""
        with self._reading() as db:
            row = self._run(db, "SELECT token FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return False
        return hmac.compare_digest(row[0].encode(), token_digest(token).encode())

    def save_turn(
        self,
        session_id: str,
        state: dict,
        turn: int,
        messages: list[tuple[str, str, dict | None]],
        feedback: Iterable[FeedbackEvent] = (),
    ) -> None:
        """Write turn `turn`'s state, messages and feedback atomically.

        The session must still be at turn `turn - 1`; otherwise another request moved it
        and this one raises `ConflictError` without writing anything.
        """
        now = time.time()
        with self._transaction() as db:
            updated = self._run(
                db,
                "UPDATE sessions SET state = ?, updated = ?, turn = ? WHERE id = ? AND turn = ?",
                (json.dumps(state), now, turn, session_id, turn - 1),
            )
            if updated.rowcount == 0:
                exists = self._run(db, "SELECT 1 FROM sessions WHERE id = ?", (session_id,))
                if exists.fetchone() is None:
                    raise NotFoundError(f"no session {session_id!r}")
                raise ConflictError(
                    f"session {session_id} moved on while this message was answered; resend it"
                )
            for role, text, payload in messages:
                self._run(
                    db,
                    "INSERT INTO messages (session_id, turn, role, text, payload, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, turn, role, text, json.dumps(payload) if payload else None, now),
                )
            self._insert_feedback(db, list(feedback), now)

    def messages(self, session_id: str) -> list[dict]:
        with self._reading() as db:
            if (
                self._run(db, "SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone()
                is None
            ):
                raise NotFoundError(f"no session {session_id!r}")
            rows = self._run(
                db,
                "SELECT turn, role, text, payload, created FROM messages WHERE session_id = ? "
                "ORDER BY id",
                (session_id,),
            ).fetchall()
        return [
            {"turn": t, "role": r, "text": x, "payload": json.loads(p) if p else None, "created": c}
            for t, r, x, p, c in rows
        ]

    def session_ids(self) -> list[str]:
        with self._reading() as db:
            return [r[0] for r in self._run(db, "SELECT id FROM sessions ORDER BY created")]

    # ----- feedback -----------------------------------------------------------------
    def add_feedback(self, events: Iterable[FeedbackEvent]) -> list[int]:
        """Append events durably (one transaction); returns their ids in order."""
        events = list(events)
        with self._transaction() as db:
            return self._insert_feedback(db, events, time.time())

    def _insert_feedback(self, db: Any, events: list[FeedbackEvent], now: float) -> list[int]:
        ids = []
        for event in events:
            row = self._run(
                db,
                "INSERT INTO feedback (user_id, session_id, item_id, kind, rating, event_time, "
                "received, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    event.user_id,
                    event.session_id,
                    event.item_id,
                    event.kind,
                    event.rating,
                    event.timestamp if event.timestamp is not None else now,
                    now,
                    event.source,
                ),
            ).fetchone()
            event.id, event.received = int(row[0]), now
            ids.append(event.id)
        return ids

    def feedback(self, after_id: int = 0, limit: int | None = None) -> list[FeedbackEvent]:
        """Feedback events with id > `after_id`, oldest first (page with the last id)."""
        query = (
            "SELECT id, user_id, session_id, item_id, kind, rating, event_time, received, source "
            "FROM feedback WHERE id > ? ORDER BY id"
        )
        params: list[Any] = [after_id]
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._reading() as db:
            rows = self._run(db, query, params).fetchall()
        return [
            FeedbackEvent(
                id=r[0],
                user_id=r[1],
                session_id=r[2],
                item_id=r[3],
                kind=r[4],
                rating=r[5],
                timestamp=r[6],
                received=r[7],
                source=r[8],
            )
            for r in rows
        ]

    # ----- health ---------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table, for /healthz and /metrics."""
        with self._reading() as db:
            return {
                table: self._run(db, f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("sessions", "messages", "feedback")
            }

    def ping(self) -> None:
        """Raise when the database cannot answer."""
        with self._reading() as db:
            self._run(db, "SELECT 1").fetchone()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
