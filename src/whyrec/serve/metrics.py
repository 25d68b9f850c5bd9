"""Prometheus metrics: requests by route and status, latencies, sessions, turns, feedback.

Each app owns its registry (several apps may live in one test process). Routes are
labelled by their template (`/v1/sessions/{session_id}`), never by the raw path, so the
number of series stays bounded whatever clients send. Under `whyrec serve --workers N`
the parent sets PROMETHEUS_MULTIPROC_DIR before the workers start: prometheus_client then
keeps every value in a per-process file there, and /metrics adds up all processes.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "whyrec_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "whyrec_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions_created = Counter(
            "whyrec_sessions_created", "Chat sessions started", registry=r
        )
        self.turns = Counter("whyrec_chat_turns", "Chat turns answered", ["kind"], registry=r)
        self.feedback = Counter(
            "whyrec_feedback_events", "Feedback events stored", ["kind"], registry=r
        )
        self.rate_limited = Counter(
            "whyrec_rate_limited", "Requests refused by the rate limit", registry=r
        )
        self.stored = Gauge(
            "whyrec_store_rows", "Rows in the store", ["table"], registry=r,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self.answers = Counter(
            "whyrec_recommend_cache", "Recommend answers served from (hit) or added to the cache",
            ["outcome"], registry=r,
        )  # fmt: skip

    def exposition(self, counts: dict[str, int]) -> bytes:
        for table, rows in counts.items():
            self.stored.labels(table).set(rows)
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, path=shared)
        return generate_latest(everyone)


class MetricsMiddleware:
    """ASGI middleware timing every request and counting it by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
