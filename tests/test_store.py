"""The store suite, run on both backends: SQLite (a file) and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from whyrec.errors import NotFoundError, WhyrecError
from whyrec.store import (
    LATEST_VERSION,
    ConflictError,
    FeedbackEvent,
    feedback_frame,
    open_store,
    read_feedback,
)
from whyrec.store.migrations import MIGRATIONS
from whyrec.store.postgres import PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    """Where a store lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(target):
    with open_store(target) as opened:
        yield opened


def _turn(store, session_id, turn, text="hi"):
    store.save_turn(
        session_id,
        {"turn": turn, "said": text},
        turn,
        [("user", text, {"n": turn}), ("assistant", f"re: {text}", None)],
    )


def test_sessions_round_trip_and_tokens(store):
    session_id, token = store.create({"turn": 0, "liked": [3]}, "7")
    assert store.load(session_id) == {"turn": 0, "liked": [3]}
    assert store.check_token(session_id, token)
    with store._reading() as db:  # a leaked database opens no session
        assert store._run(db, "SELECT token FROM sessions").fetchone()[0] != token
    assert not store.check_token(session_id, token + "x")
    assert not store.check_token("nope", token)
    with pytest.raises(NotFoundError, match="no session"):
        store.load("nope")
    with pytest.raises(NotFoundError):
        store.messages("nope")
    assert session_id in store.session_ids()


def test_turns_are_atomic_and_ordered(store):
    session_id, _ = store.create({"turn": 0}, None)
    _turn(store, session_id, 1, "first")
    _turn(store, session_id, 2, "second")
    messages = store.messages(session_id)
    assert [(m["turn"], m["role"]) for m in messages] == [
        (1, "user"),
        (1, "assistant"),
        (2, "user"),
        (2, "assistant"),
    ]
    assert messages[0]["payload"] == {"n": 1} and messages[1]["payload"] is None
    assert store.load(session_id) == {"turn": 2, "said": "second"}
    # a message that cannot be stored rolls back the whole turn, state included
    with pytest.raises(TypeError):
        store.save_turn(session_id, {"turn": 3}, 3, [("user", "x", {"bad": object()})])
    assert store.load(session_id)["turn"] == 2
    assert len(store.messages(session_id)) == 4


def test_a_stale_turn_conflicts_and_writes_nothing(store):
    session_id, _ = store.create({"turn": 0}, None)
    _turn(store, session_id, 1)
    with pytest.raises(ConflictError, match="moved on"):
        _turn(store, session_id, 1, "late duplicate")
    with pytest.raises(NotFoundError):
        _turn(store, "nope", 1)
    assert [m["text"] for m in store.messages(session_id)] == ["hi", "re: hi"]


def test_feedback_is_appended_and_read_back(store):
    ids = store.add_feedback(
        [
            FeedbackEvent(item_id="1", user_id="u1", kind="interaction", timestamp=100.0),
            FeedbackEvent(item_id="50", user_id="u1", kind="rating", rating=4.5),
            FeedbackEvent(item_id="2", session_id="s1", kind="like", source="key-a"),
        ]
    )
    assert ids == sorted(ids) and len(set(ids)) == 3
    events = read_feedback(store)
    assert [e.item_id for e in events] == ["1", "50", "2"]
    assert events[0].timestamp == 100.0 and events[1].rating == 4.5
    assert events[2].source == "key-a" and events[2].received is not None
    assert [e.item_id for e in read_feedback(store, after_id=ids[0])] == ["50", "2"]
    assert len(read_feedback(store, limit=1)) == 1
    frame = feedback_frame(store)
    assert list(frame.columns[:6]) == ["id", "user_id", "item_id", "kind", "rating", "timestamp"]
    assert frame["user_id"].tolist() == ["u1", "u1", "session:s1"]
    assert store.counts()["feedback"] == 3


def test_feedback_lands_with_its_turn(store):
    session_id, _ = store.create({"turn": 0}, None)
    event = FeedbackEvent(item_id="9", kind="dislike", session_id=session_id)
    store.save_turn(session_id, {"turn": 1}, 1, [("user", "no", None)], [event])
    assert [e.item_id for e in read_feedback(store)] == ["9"]
    with pytest.raises(ConflictError):
        store.save_turn(
            session_id, {"turn": 1}, 1, [], [FeedbackEvent(item_id="8", session_id=session_id)]
        )
    assert [e.item_id for e in read_feedback(store)] == ["9"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_id": "1", "user_id": "u", "kind": "purchase"}, "kind must be one of"),
        ({"item_id": "1", "user_id": "u", "kind": "rating"}, "needs a rating"),
        ({"item_id": "1"}, "user_id or a session_id"),
    ],
)
def test_bad_feedback_is_a_user_error(fields, message):
    with pytest.raises(WhyrecError, match=message):
        FeedbackEvent(**fields)


def test_everything_survives_reopening(target):
    with open_store(target) as first:
        session_id, token = first.create({"turn": 0}, "1")
        _turn(first, session_id, 1)
        first.add_feedback([FeedbackEvent(item_id="3", user_id="1")])
    with open_store(target) as second:
        assert second.schema_version() == LATEST_VERSION
        assert second.check_token(session_id, token)
        assert len(second.messages(session_id)) == 2
        assert [e.item_id for e in second.feedback()] == ["3"]


def test_concurrent_writers_lose_nothing(store):
    def write(worker: int) -> None:
        for n in range(20):
            store.add_feedback([FeedbackEvent(item_id=str(n), user_id=f"w{worker}")])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = store.feedback()
    assert len(events) == 80 and len({e.id for e in events}) == 80


def test_version_one_databases_upgrade_in_place(target):
    """A database at schema 1 (the first store) keeps its sessions and gains the rest."""
    with open_store(target) as store, store._transaction() as db:
        for table in ("feedback", "messages", "sessions", "whyrec_schema"):
            store._run(db, f"DROP TABLE {table}")
        for statement in MIGRATIONS[0].sql(store.dialect):
            store._run(db, statement)
        store._run(
            db,
            "INSERT INTO sessions (id, user_id, token, created, updated, state) "
            "VALUES ('old', NULL, 'tok', ?, ?, '{\"turn\": 2}')",
            (time.time(), time.time()),
        )
        for turn in (1, 2):
            store._run(
                db,
                "INSERT INTO messages (session_id, turn, role, text, created) "
                "VALUES ('old', ?, 'user', 'hello', ?)",
                (turn, time.time()),
            )
    with open_store(target) as upgraded:
        assert upgraded.schema_version() == LATEST_VERSION
        assert upgraded.load("old") == {"turn": 2}
        _turn(upgraded, "old", 3)  # the turn counter was rebuilt from the messages
        assert len(upgraded.messages("old")) == 4
        # the old plain-text token still opens the session, and is no longer stored
        assert upgraded.check_token("old", "tok") and not upgraded.check_token("old", "tok2")
        with upgraded._reading() as db:
            stored = upgraded._run(db, "SELECT token FROM sessions").fetchone()[0]
        assert stored.startswith("sha256:") and "tok" not in stored.removeprefix("sha256:")


def test_a_newer_schema_is_refused(target):
    with open_store(target) as store, store._transaction() as db:
        store._run(
            db,
            "INSERT INTO whyrec_schema (version, description, applied) VALUES (?, 'future', 0)",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(WhyrecError, match="newer than"):
        open_store(target)


def test_sqlite_runs_in_wal_mode(tmp_path):
    path = tmp_path / "wal.sqlite"
    open_store(str(path)).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreachable_postgres_is_one_clear_line():
    with pytest.raises(WhyrecError, match=r"cannot open PostgreSQL database .*\*\*\*"):
        PostgresStore("postgresql://who:secret@127.0.0.1:1/none", timeout=1)
