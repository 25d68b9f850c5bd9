"""kill -9 the server in the middle of a stream of chat turns and feedback, restart it,
and count: every acknowledged message and event must be there, no session corrupted.
Run on both stores."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from live_server import LiveServer
from whyrec.store import open_store, read_feedback

MESSAGES = ["a funny animated film", "from the 90s", "something like Toy Story", "none of these"]
CLIENTS = 4
KILL_AFTER = 24  # acknowledgements before the kill


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "faults.sqlite")
    return request.getfixturevalue("postgres_url")


def _stream(url, session, acked, stop, lock):
    """Alternate turns and feedback on one session until stopped or refused."""
    auth = {"Authorization": f"Bearer {session['token']}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        for n in range(1000):
            if stop.is_set():
                return
            try:
                if n % 2 == 0:
                    text = f"{MESSAGES[(n // 2) % len(MESSAGES)]} #{n}"
                    reply = http.post(
                        f"/v1/sessions/{session['session_id']}/messages",
                        json={"text": text},
                        headers=auth,
                    )
                    if reply.status_code == 200:
                        with lock:
                            acked["turns"].append(
                                (session["session_id"], reply.json()["turn"], text)
                            )
                    else:
                        with lock:
                            acked["refused"].append((reply.status_code, reply.text[:200]))
                else:
                    event = {"item_id": "1", "session_id": session["session_id"], "kind": "like"}
                    reply = http.post("/v1/feedback", json={"events": [event]}, headers=auth)
                    if reply.status_code == 201:
                        with lock:
                            acked["feedback"].extend(reply.json()["ids"])
                    else:
                        with lock:
                            acked["refused"].append((reply.status_code, reply.text[:200]))
            except httpx.HTTPError:
                return  # the server died under us: unacknowledged, so nothing is owed


def test_kill_nine_loses_nothing_acknowledged(served_bundle, db, tmp_path):
    log = tmp_path / "server.log"
    server = LiveServer(served_bundle, db, log, "--rate-limit", "0").wait_ready()
    sessions = [httpx.post(f"{server.url}/v1/sessions", json={}).json() for _ in range(CLIENTS)]
    acked: dict[str, list] = {"turns": [], "feedback": [], "refused": []}
    stop, lock = threading.Event(), threading.Lock()
    streams = [
        threading.Thread(target=_stream, args=(server.url, s, acked, stop, lock)) for s in sessions
    ]
    for thread in streams:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acked["turns"]) + len(acked["feedback"]) < KILL_AFTER:
        assert time.monotonic() < deadline, "the stream did not get going"
        time.sleep(0.01)
    server.kill()  # mid-stream: requests are in flight on every client
    stop.set()
    for thread in streams:
        thread.join(timeout=30)

    restarted = LiveServer(served_bundle, db, log, "--rate-limit", "0").wait_ready()
    try:
        found_turns = 0
        for session in sessions:
            auth = {"Authorization": f"Bearer {session['token']}"}
            view = httpx.get(f"{restarted.url}/v1/sessions/{session['session_id']}", headers=auth)
            assert view.status_code == 200, view.text
            messages = view.json()["messages"]
            turns = [m["turn"] for m in messages]
            # whole turns only, numbered 1..n, and the session's own counter agrees
            assert turns == [t for t in range(1, view.json()["turn"] + 1) for _ in (0, 1)]
            said = {(m["turn"], m["text"]) for m in messages if m["role"] == "user"}
            mine = [(t, x) for s, t, x in acked["turns"] if s == session["session_id"]]
            assert set(mine) <= said, "an acknowledged turn was lost"
            found_turns += len(set(mine) & said)
            after = httpx.post(
                f"{restarted.url}/v1/sessions/{session['session_id']}/messages",
                json={"text": "start over"},
                headers=auth,
            )
            assert after.status_code == 200, "a session cannot go on after the restart"
        with open_store(db) as store:
            stored_ids = {e.id for e in read_feedback(store)}
        found_feedback = len(set(acked["feedback"]) & stored_ids)
        print(
            f"\nkill -9 ({db.split('://')[0] if '://' in db else 'sqlite'}): "
            f"turns acknowledged {len(acked['turns'])}, found {found_turns}; "
            f"feedback acknowledged {len(acked['feedback'])}, found {found_feedback}; "
            f"feedback stored {len(stored_ids)}"
        )
        assert found_turns == len(acked["turns"]) > 0
        assert found_feedback == len(acked["feedback"]) > 0
        assert acked["refused"] == [], "a live server refused a valid request"
    finally:
        restarted.stop()


def _worker_pids(url: str, tries: int = 60) -> set[int]:
    """Pids answering /healthz over fresh connections (the kernel spreads them)."""
    return {httpx.get(f"{url}/healthz", timeout=30).json()["pid"] for _ in range(tries)}


def test_a_killed_worker_is_replaced_and_loses_nothing_acknowledged(served_bundle, tmp_path):
    """`--workers 2`: kill -9 one worker mid-stream; its supervisor starts a new one, the
    other keeps serving, and everything acknowledged by either is stored."""
    db = str(tmp_path / "workers.sqlite")
    extra = ("--rate-limit", "0", "--workers", "2")
    with LiveServer(served_bundle, db, tmp_path / "server.log", *extra) as server:
        before = _worker_pids(server.url)
        assert len(before) == 2
        sessions = [httpx.post(f"{server.url}/v1/sessions", json={}).json() for _ in range(6)]
        acked: dict[str, list] = {"turns": [], "feedback": [], "refused": []}
        stop, lock = threading.Event(), threading.Lock()
        streams = [
            threading.Thread(target=_stream, args=(server.url, s, acked, stop, lock))
            for s in sessions
        ]
        for thread in streams:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acked["turns"]) + len(acked["feedback"]) < KILL_AFTER:
            assert time.monotonic() < deadline, "the stream did not get going"
            time.sleep(0.01)
        os.kill(min(before), signal.SIGKILL)
        time.sleep(1.0)  # streams on the surviving worker go on meanwhile
        stop.set()
        for thread in streams:
            thread.join(timeout=30)

        deadline = time.monotonic() + 120
        while not (now := _worker_pids(server.url, 20)) - before or len(now) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.5)
        with open_store(db) as store:
            said = {
                (session["session_id"], m["turn"], m["text"])
                for session in sessions
                for m in store.messages(session["session_id"])
                if m["role"] == "user"
            }
            stored_ids = {e.id for e in read_feedback(store)}
        assert set(acked["turns"]) <= said, "an acknowledged turn was lost"
        assert set(acked["feedback"]) <= stored_ids, "acknowledged feedback was lost"
        assert acked["refused"] == [], "a live worker refused a valid request"
        for session in sessions:  # every session goes on, on whichever worker
            auth = {"Authorization": f"Bearer {session['token']}"}
            after = httpx.post(f"{server.url}/v1/sessions/{session['session_id']}/messages",
                               json={"text": "start over"}, headers=auth)  # fmt: skip
            assert after.status_code == 200, after.text
        print(f"\nkill -9 of one of 2 workers: turns acknowledged {len(acked['turns'])}, "
              f"feedback acknowledged {len(acked['feedback'])}, all found; "
              f"worker {min(before)} replaced by {sorted(now - before)}")  # fmt: skip
