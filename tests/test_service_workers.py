"""`whyrec serve --workers 2`: two processes behind one port act as one service.

Feedback stored through either worker reaches both engines, a caller's rate limit is one
bucket (not one per process), and /metrics adds up all workers. Each request below opens
a fresh connection, so the kernel hands them to either worker.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from cli_helpers import run
from live_server import LiveServer
from whyrec.serve.security import SharedRateLimiter
from whyrec.serve.service import FeedbackCursor
from whyrec.store import FeedbackEvent

FEEDBACK_KEY, FLOOD_KEY = "key-feedback", "key-flood"
BURST = 40
FLOOD_RATE = BURST // 2
"""The flood key's own rate: a keyed caller gets two seconds' worth of burst, so BURST."""


def _post(url: str, path: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers={"X-API-Key": key}, timeout=30)


def _counter(metrics: str, route: str, status: int) -> float:
    pattern = (
        r'whyrec_http_requests_total\{method="POST",route="' + re.escape(route)
        + r'",status="' + str(status) + r'"\} ([0-9.e+]+)'
    )  # fmt: skip
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_url")


def test_workers_share_feedback_rate_limits_and_metrics(served_bundle, db, tmp_path):
    extra = ["--workers", "2", "--api-key", FEEDBACK_KEY, "--api-key", f"{FLOOD_KEY}:{FLOOD_RATE}",
             "--rate-limit", "1", "--rate-burst", str(BURST)]  # fmt: skip
    with LiveServer(served_bundle, db, tmp_path / "log", *extra) as live:
        pids = {httpx.get(f"{live.url}/healthz", timeout=30).json()["pid"] for _ in range(40)}
        assert len(pids) == 2, "both workers answer"

        # feedback through one worker changes what every worker recommends
        user = "1"
        request = {"user_id": user, "k": 5, "explain": False}
        before = _post(live.url, "/v1/recommend", FEEDBACK_KEY, request).json()["items"]
        liked = before[0]["item_id"]
        event = {"events": [{"user_id": user, "item_id": liked, "kind": "like"}]}
        assert _post(live.url, "/v1/feedback", FEEDBACK_KEY, event).status_code == 201
        answers = [_post(live.url, "/v1/recommend", FEEDBACK_KEY, request) for _ in range(20)]
        assert all(a.status_code == 200 for a in answers)
        lists = {tuple(i["item_id"] for i in a.json()["items"]) for a in answers}
        assert len(lists) == 1 and liked not in next(iter(lists)), "no worker is stale"

        # one bucket per caller across processes: at most BURST + refill get through
        started = time.monotonic()
        flood = [_post(live.url, "/v1/recommend", FLOOD_KEY, request) for _ in range(2 * BURST)]
        elapsed = time.monotonic() - started
        passed = sum(r.status_code == 200 for r in flood)
        refused = [r for r in flood if r.status_code == 429]
        assert passed + len(refused) == len(flood)
        assert BURST <= passed <= BURST + int(elapsed * FLOOD_RATE) + 1
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)

        # /metrics counts every worker's requests, whichever worker serves it
        metrics = httpx.get(f"{live.url}/metrics", timeout=30).text
        assert _counter(metrics, "/v1/recommend", 200) == 1 + len(answers) + passed
        assert _counter(metrics, "/v1/recommend", 429) == len(refused)
        assert _counter(metrics, "/v1/feedback", 201) == 1


def test_workers_refuse_a_bad_bundle_before_starting(tmp_path, capsys):
    code, _, err = run(capsys, "serve", "--bundle", str(tmp_path), "--workers", "2")
    assert code == 2 and "not a whyrec bundle" in err
    code, _, err = run(capsys, "serve", "--bundle", str(tmp_path), "--workers", "2",
                       "--db", ":memory:")  # fmt: skip
    assert code == 2 and "database they share" in err


def test_feedback_cursor_waits_for_late_commits_then_gives_up_on_gaps():
    """PostgreSQL may commit id 3 after id 4; the cursor must not skip it, nor wait forever
    for an id that a rolled-back insert consumed."""
    now = time.time()

    def events(*ids: int, age: float = 0.0) -> list[FeedbackEvent]:
        return [FeedbackEvent("1", user_id="7", id=i, received=now - age) for i in ids]

    cursor = FeedbackCursor()
    assert [e.id for e in cursor.unseen(events(1, 2, 4))] == [1, 2, 4]
    assert cursor.watermark == 2  # 3 may still be in flight
    assert [e.id for e in cursor.unseen(events(4))] == []  # read again above 2: not twice
    assert [e.id for e in cursor.unseen(events(3, 4))] == [3]
    assert cursor.watermark == 4
    # a gap below an event older than the grace period is a rolled-back insert
    assert [e.id for e in cursor.unseen(events(6, age=2 * FeedbackCursor.GAP_GRACE))] == [6]
    assert cursor.watermark == 6


def test_shared_rate_limiter_is_one_bucket_across_mappings(tmp_path):
    """Two mappings of one table (as two worker processes hold) drain the same bucket."""
    table = tmp_path / "rates.bin"
    SharedRateLimiter.create(table)
    first, second = (SharedRateLimiter(table, rate=0.001, burst=3) for _ in range(2))
    assert [first.retry_after("key:a"), second.retry_after("key:a")] == [None, None]
    assert first.retry_after("key:a") is None
    assert second.retry_after("key:a") > 0 and first.retry_after("key:a") > 0
    assert second.retry_after("key:b") is None  # other callers keep their own bucket


class TinyTable(SharedRateLimiter):
    SLOTS, PROBES = 4, 2


def test_a_full_rate_table_reuses_the_stalest_bucket(tmp_path):
    table = tmp_path / "tiny.bin"
    TinyTable.create(table)
    limiter = TinyTable(table, rate=0.001, burst=1)
    crowd = [f"ip:{n}" for n in range(12)]  # three times the slots
    assert all(limiter.retry_after(name) is None for name in crowd)  # nobody refused
    assert int((limiter._keys != 0).sum()) == TinyTable.SLOTS
    assert limiter.retry_after(crowd[-1]) > 0  # the newest buckets are still held
