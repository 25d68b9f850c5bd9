"""Who is calling, how often, and how much they may send.

API keys (`X-API-Key`) come from WHYREC_API_KEYS or `--api-key`, each `KEY` or
`KEY:RATE`; a chat session's token (`Authorization: Bearer`) opens that session only.
Rate limits are token buckets per caller: a key is unlimited unless it was given a rate
(a shop's backend calls with one key from many connections), sessions and anonymous
callers get `--rate-limit`. Oversized bodies are refused before they are read whole.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import mmap
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whyrec.errors import WhyrecError
from whyrec.store.tokens import token_digest

KEYS_ENV = "WHYREC_API_KEYS"


def api_keys_from(flags: list[str] | None) -> list[str]:
    """Keys given as flags, else the comma-separated WHYREC_API_KEYS (each KEY[:RATE])."""
    keys = [k.strip() for k in (flags or []) if k.strip()]
    if not keys:
        keys = [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
    for spec in keys:
        parse_key(spec)  # a bad rate is one line at start-up, not a surprise later
    return keys


def parse_key(spec: str) -> tuple[str, float | None]:
    """ "secret:50" → ("secret", 50.0): at most 50 requests a second; "secret" → ("secret",
    None): unlimited. The rate is what follows the last colon when that is a number."""
    key, sep, rate_text = spec.rpartition(":")
    if not sep:
        return spec, None
    try:
        rate = float(rate_text)
    except ValueError:
        return spec, None  # a colon inside the key itself
    if not key:
        raise WhyrecError(f"API key spec {spec!r} has a rate but no key")
    if not (0 < rate < float("inf")):
        raise WhyrecError(f"API key rate must be a positive number of requests a second: {spec!r}")
    return key, rate


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a key (for logs, metrics and feedback)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Caller:
    """`kind` is "key", "session" (a bearer token) or "anonymous"; `name` identifies the
    caller for rate limits and feedback provenance without revealing its secret."""

    kind: str
    name: str
    token: str | None = None

    @property
    def has_key(self) -> bool:
        return self.kind == "key"


class KeyRing:
    """The accepted keys and each key's rate (None: unlimited)."""

    def __init__(self, specs: list[str]) -> None:
        parsed = [parse_key(spec) for spec in specs]
        self._keys = [key.encode() for key, _ in parsed]
        self._rates = [rate for _, rate in parsed]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def match(self, presented: str | None) -> bool:
        return self.lookup(presented) is not None

    def lookup(self, presented: str | None) -> tuple[float | None] | None:
        """None for an unknown key, else a 1-tuple with its rate (None: unlimited)."""
        if presented is None:
            return None
        given = presented.encode()
        # compare against every key, so timing does not tell which one nearly matched
        hits = [hmac.compare_digest(given, key) for key in self._keys]
        return (self._rates[hits.index(True)],) if any(hits) else None


def refill(tokens: float, last: float, now: float, rate: float, burst: int) -> tuple[float, float]:
    """One token-bucket step: (tokens left, seconds to wait; 0 when the request may go)."""
    tokens = min(float(burst), tokens + (now - last) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class SessionTokens:
    """Sessions whose token was already checked against the store, by token digest.

    A bounded LRU: forgetting a session only costs one more database read."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._digests: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def knows(self, session_id: str, token: str) -> bool:
        with self._lock:
            digest = self._digests.get(session_id)
        return digest is not None and hmac.compare_digest(digest, token_digest(token))

    def remember(self, session_id: str, token: str) -> None:
        with self._lock:
            self._digests[session_id] = token_digest(token)
            self._digests.move_to_end(session_id)
            while len(self._digests) > self.size:
                self._digests.popitem(last=False)


class RateLimiter:
    """Token bucket per caller: `rate` requests a second on average, bursts of `burst`."""

    MAX_CALLERS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def limits(self, rate: float | None) -> tuple[float, int]:
        """(rate, burst) for a caller: the default, or a key's own rate with two seconds'
        worth of burst, as the default has."""
        if rate is None:
            return self.rate, self.burst
        return rate, max(1, round(2 * rate))

    def retry_after(self, caller: str, rate: float | None = None) -> float | None:
        """None when the request may proceed, else seconds until it would. `rate`
        overrides the default for this caller (a key's own rate)."""
        if rate is None and not self.enabled:
            return None
        rate, burst = self.limits(rate)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller, (float(burst), now))
            tokens, wait = refill(tokens, last, now, rate, burst)
            self._buckets[caller] = (tokens, now)
            if len(self._buckets) > self.MAX_CALLERS:
                self._forget_full_buckets(now)
            return wait or None

    def _forget_full_buckets(self, now: float) -> None:
        # a key's own rate refills in two seconds; slower rates, a minute at most
        refill_time = max(self.burst / self.rate if self.rate > 0 else 0.0, 60.0)
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_time}


class SharedRateLimiter(RateLimiter):
    """The same buckets, kept in a memory-mapped file that every worker process maps.

    With `whyrec serve --workers N` a caller's requests land on any process, so buckets
    kept per process would let each caller through N times the limit. The table is an
    open-addressing hash of caller fingerprints (a few probes, then the stalest bucket of
    the probed slots is reused: it has refilled the longest); one `flock` makes an update
    atomic across processes, and CLOCK_MONOTONIC is the same clock in all of them.
    """

    SLOTS = 1 << 16
    PROBES = 8

    def __init__(self, path: str | os.PathLike, rate: float, burst: int) -> None:
        super().__init__(rate, burst)
        size = 3 * 8 * self.SLOTS
        self._file = open(path, "a+b")  # noqa: SIM115 - mapped for the life of the process
        if os.fstat(self._file.fileno()).st_size < size:
            self._file.truncate(size)  # zero-filled: key 0 marks an empty slot
        self._map = mmap.mmap(self._file.fileno(), size)
        self._keys = np.ndarray((self.SLOTS,), np.uint64, self._map, 0)
        self._tokens = np.ndarray((self.SLOTS,), np.float64, self._map, 8 * self.SLOTS)
        self._last = np.ndarray((self.SLOTS,), np.float64, self._map, 16 * self.SLOTS)

    @classmethod
    def create(cls, path: str | os.PathLike) -> None:
        """Make an empty table for workers to map (called once by the parent process)."""
        with open(path, "wb") as table:
            table.truncate(3 * 8 * cls.SLOTS)

    def _slot(self, key: int) -> tuple[int, bool]:
        """(slot, whether it already holds this caller)."""
        start = key % self.SLOTS
        probes = [(start + i) % self.SLOTS for i in range(self.PROBES)]
        for slot in probes:
            held = int(self._keys[slot])
            if held == key:
                return slot, True
            if held == 0:
                return slot, False
        return min(probes, key=lambda s: self._last[s]), False

    def retry_after(self, caller: str, rate: float | None = None) -> float | None:
        if rate is None and not self.enabled:
            return None
        rate, burst = self.limits(rate)
        digest = hashlib.blake2b(caller.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little") | 1  # never 0, the empty marker
        with self._lock:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                now = time.monotonic()
                slot, known = self._slot(key)
                tokens = float(self._tokens[slot]) if known else float(burst)
                last = float(self._last[slot]) if known else now
                tokens, wait = refill(tokens, last, now, rate, burst)
                self._keys[slot], self._tokens[slot], self._last[slot] = key, tokens, now
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        return wait or None


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by header or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            """Past the limit: answer 413 now and tell the app the client went away."""
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # the 413 already went out; the app's answer is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "status": 413,
                    "message": f"request body over {self.max_bytes} bytes",
                    "details": [],
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
