"""One place that talks to the OpenAI-compatible server, and never lets it stall a turn.

Every call runs under the turn's deadline (`CallContext`): retries with exponential
backoff after 429s, 5xx answers, timeouts and dropped connections, but never past the
deadline; the call itself runs on a worker thread that is abandoned at the deadline, so
even a server that trickles bytes cannot hold a turn longer than the configured timeout.
Each session has a token budget; identical requests are answered from a cache. What
happened to every call (outcome, attempts, seconds, tokens) is written to the turn's
trace, and the callers fall back to the embedded engine whenever a call returns None.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from whyrec.llm.config import LLMConfig

MIN_CALL_SECONDS = 0.05
"""A call with less time than this left before the deadline is not started."""
CHARS_PER_TOKEN = 4
"""Rough size of a token, for requests whose server reports no usage."""
RESERVE_SHARE, RESERVE_MAX = 0.1, 0.05
"""Part of the timeout (at most 50 ms) kept back from the calls for whyrec's own work
around them (prompts, validation, storing the trace), so that a turn with the LLM down
costs at most the timeout plus the embedded turn."""
RETRYABLE = ("rate_limited", "server_error", "timeout", "connection")
UNREACHABLE = ("timeout", "connection", "server_error")


@dataclass
class TokenBudget:
    """Tokens a session may still spend; shared by all its calls."""

    limit: int
    used: int = 0

    @property
    def remaining(self) -> int:
        return self.limit - self.used


@dataclass
class CallContext:
    """One turn's view of the LLM: its deadline, the session's budget and the trace."""

    deadline: float
    budget: TokenBudget
    calls: list[dict] = field(default_factory=list)
    unreachable: bool = False
    """Set once a call failed for good: later calls of the turn are skipped at once."""

    @classmethod
    def for_turn(cls, config: LLMConfig, budget: TokenBudget) -> CallContext:
        reserve = min(RESERVE_MAX, RESERVE_SHARE * config.timeout)
        return cls(time.monotonic() + config.timeout - reserve, budget)

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def tokens(self) -> int:
        return sum(c.get("tokens", 0) for c in self.calls)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatResult:
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    tokens: int
    key: str
    cached: bool = False


def request_key(body: dict) -> str:
    """The cache key: a hash of the whole request body, canonically serialised."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _classify(exc: BaseException) -> tuple[str, int | None, float | None]:
    """(outcome, HTTP status, Retry-After seconds) for an exception of the SDK."""
    import openai

    status = getattr(exc, "status_code", None)
    retry_after = None
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except (TypeError, ValueError):
            retry_after = None
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None, None
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", status, retry_after
    if isinstance(exc, openai.APIStatusError):
        return ("server_error" if (status or 0) >= 500 else "rejected"), status, retry_after
    return "bad_response", status, None


class LLMClient:
    """Chat completions against one configured server (thread-safe; share it freely)."""

    def __init__(self, config: LLMConfig) -> None:
        import openai

        self.config = config
        self._openai = openai.OpenAI(
            base_url=config.endpoint,
            api_key=config.api_key or "none",
            timeout=config.timeout,
            max_retries=0,  # retries are ours: they must respect the turn's deadline
        )
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="whyrec-llm")
        self._cache: OrderedDict[str, ChatResult] = OrderedDict()
        self._lock = threading.Lock()
        self._down_until = 0.0

    # ----- request shapes -----------------------------------------------------------------
    def body(
        self,
        messages: list[dict],
        schema: tuple[str, dict] | None = None,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
    ) -> dict:
        """The chat.completions request body exactly as it goes on the wire."""
        body: dict[str, Any] = {
            "model": self.config.model or "default",
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if schema is not None:
            name, json_schema = schema
            if self.config.json_mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": json_schema, "strict": False},
                }
            else:
                body["response_format"] = {"type": "json_object"}
        if tools:
            body["tools"] = tools
            body["tool_choice"] = tool_choice or "auto"
        return body

    # ----- the call ----------------------------------------------------------------------
    def chat(self, ctx: CallContext, purpose: str, body: dict) -> ChatResult | None:
        """Send one request (with retries); None, with the reason in the trace, on failure."""
        record: dict[str, Any] = {"purpose": purpose, "attempts": 0, "tokens": 0}
        ctx.calls.append(record)
        started = time.monotonic()
        key = request_key(body)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            record.update(outcome="cached", seconds=0.0)
            return ChatResult(hit.content, hit.tool_calls, 0, key, cached=True)
        skip = self._skip_reason(ctx, body)
        if skip:
            record.update(outcome="skipped", reason=skip, seconds=0.0)
            return None
        outcome, errors = "failed", []
        result = None
        for attempt in range(self.config.max_retries + 1):
            remaining = ctx.remaining
            if remaining < MIN_CALL_SECONDS:
                outcome = "timeout"
                errors.append("deadline reached")
                break
            record["attempts"] = attempt + 1
            result, outcome, status, retry_after = self._attempt(body, key, remaining)
            if result is not None:
                break
            errors.append(outcome if status is None else f"{outcome} ({status})")
            if outcome not in RETRYABLE or attempt == self.config.max_retries:
                break
            delay = self.config.backoff * 2**attempt
            if retry_after is not None:
                delay = max(delay, retry_after)
            if delay + MIN_CALL_SECONDS >= ctx.remaining:
                errors.append("no time left to retry")
                break
            time.sleep(delay)
        record["seconds"] = round(time.monotonic() - started, 3)
        if errors:
            record["errors"] = errors
        if result is None:
            record["outcome"] = outcome
            if outcome in UNREACHABLE:
                ctx.unreachable = True
                with self._lock:
                    self._down_until = time.monotonic() + self.config.cooldown
            return None
        record.update(outcome="ok", tokens=result.tokens)
        ctx.budget.used += result.tokens
        if self.config.cache_size:
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return result

    def discard(self, result: ChatResult) -> None:
        """Forget a cached response that turned out unusable, so it is not served again."""
        with self._lock:
            self._cache.pop(result.key, None)

    def _skip_reason(self, ctx: CallContext, body: dict) -> str | None:
        if ctx.unreachable:
            return "the LLM failed earlier in this turn"
        if time.monotonic() < self._down_until:
            return "the LLM was unreachable moments ago (cooling down)"
        estimate = len(json.dumps(body["messages"])) // CHARS_PER_TOKEN
        if ctx.budget.remaining < estimate + self.config.max_tokens // 4:
            return f"session token budget spent ({ctx.budget.used} of {ctx.budget.limit})"
        if ctx.remaining < MIN_CALL_SECONDS:
            return "no time left in this turn"
        return None

    def _attempt(
        self, body: dict, key: str, remaining: float
    ) -> tuple[ChatResult | None, str, int | None, float | None]:
        future = self._pool.submit(self._send, body, key, remaining)
        try:
            return future.result(timeout=remaining), "ok", None, None
        except FutureTimeout:
            return None, "timeout", None, None
        except Exception as exc:  # the SDK's errors, and whatever a broken server causes
            outcome, status, retry_after = _classify(exc)
            return None, outcome, status, retry_after

    def _send(self, body: dict, key: str, timeout: float) -> ChatResult:
        completion = self._openai.chat.completions.create(**body, timeout=timeout)
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ValueError("the response has no choices")
        message = choices[0].message
        calls = tuple(
            ToolCall(str(c.id), str(c.function.name), str(c.function.arguments or ""))
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        )
        usage = getattr(completion, "usage", None)
        tokens = int(getattr(usage, "total_tokens", 0) or 0)
        if not tokens:
            size = len(json.dumps(body["messages"])) + len(message.content or "")
            tokens = size // CHARS_PER_TOKEN
        return ChatResult(message.content, calls, tokens, key)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._openai.close()
