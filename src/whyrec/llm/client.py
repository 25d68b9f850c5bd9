"""One place that talks to the OpenAI-compatible server, and never lets it stall a turn.

Every call runs under the turn's deadline (`CallContext`): retries with exponential
backoff after 429s, 5xx answers, timeouts and dropped connections, but never past the
deadline; the call itself runs on a worker thread that is abandoned at the deadline, so
even a server that trickles bytes cannot hold a turn longer than the configured timeout.
Each session has a token budget; identical requests are answered from a cache. What
happened to every call (outcome, attempts, seconds, tokens) is written to the turn's
trace, and the callers fall back to the embedded engine whenever a call returns None.

Servers speak different dialects of the API. How structured output and tool calls are
asked for is negotiated per server and model (`Dialect`): a request whose form the
server rejects (a 4xx or 5xx answer) is sent again in the next simpler form, and the
form that worked is remembered for that server and model, so a rejected feature costs
one extra call once, never a fallback, and never the "LLM down" cool-down (which only
timeouts, refused or dropped connections, and failures of the simplest form start).
Where the server describes itself (an OpenAPI document, as the FastAPI-based servers
llama-cpp-python and vLLM publish at `/openapi.json`), the forms it declares are read
from there first, so not even that one rejected call is made; the probing stays for
servers that publish no description or whose description is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
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
REJECTED = ("rejected", "server_error")
"""Answers that may mean "this server does not understand this form of request"."""
NOT_REJECTED = ("timeout", "out_of_time", "bad_response")
"""Outcomes of a simpler form showing that the server took it (unlike the richer one)."""
STRUCTURED_FORMS = ("json_schema", "json_object", "prompt")

REPETITION_BOUNDS = frozenset(
    {"maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties"}
)
"""Bounds llama.cpp's schema-to-grammar converter expands into one nested rule per unit:
a 1,000-character limit is a thousand nested optionals, which it refuses ("exceeds sane
defaults"), and llama-cpp-python then generated without a grammar and crashed on this
machine. The answer is still validated against the full schema by pydantic."""
KEPT_BOUNDS = {"minItems": 32, "maxItems": 32, "maxLength": 80}
"""Bounds kept in the grammar up to these sizes: a few repetitions are cheap, and without
them a weak model answers a request for ten titles with an empty list, writes one "title"
until its tokens run out, or goes on listing numbers past the answer's token cap."""


def grammar_schema(schema: Any) -> Any:
    """`schema` without large repetition bounds, for servers that compile it into a
    grammar."""
    if isinstance(schema, dict):
        return {
            k: grammar_schema(v)
            for k, v in schema.items()
            if k not in REPETITION_BOUNDS or (isinstance(v, int) and v <= KEPT_BOUNDS.get(k, -1))
        }
    if isinstance(schema, list):
        return [grammar_schema(v) for v in schema]
    return schema


"""Ways to ask for JSON, richest first: a JSON schema response format, JSON mode with the
schema attached (llama.cpp makes a grammar of it), JSON asked for in the prompt."""
PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "ping",
        "description": "Answer the ping.",
        "parameters": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
        },
    },
}
PROBE_MESSAGES = [
    {"role": "system", "content": "task: probe_tools\nCall the tool `ping` with ok=true."},
    {"role": "user", "content": "ping"},
]
PROBE_MAX_TOKENS = 48
DESCRIPTION_SECONDS = 3.0
"""Longest wait for a server's description (one GET, once per server and model)."""
SPEED_WEIGHT = 0.3
"""Weight of the newest measurement in the running speed estimates: a shared machine's
speed drifts, and the estimate should follow within a few calls."""
SPEED_MARGIN = 1.2
"""Estimated seconds are stretched by this much before deciding a call will not finish
(one measurement is noisy; a call that starts should finish)."""


RETRY_SPEED_AFTER = 8
"""Calls in a row not started for being too slow, after which one is sent to measure again."""
MIN_READ_CHARS = 200
"""Unread prompt characters below which a call teaches no reading speed (its wait for the
first chunk is then mostly the server's fixed cost per request)."""


@dataclass
class StreamedCall:
    """The timing of one streamed call, for `ServerSpeed.learn`."""

    purpose: str
    chars: int
    """Characters of the prompt the server had not read already (see `ServerSpeed.unread`)."""
    started: float
    busy_until: float
    """When the server was expected to be done with abandoned work, as the call started."""
    first: float | None = None
    end: float = 0.0
    chunks: int = 0
    complete: bool = False
    queued: bool = False
    """Sent while an earlier call of ours was still at the server (one given up on): its
    wait for the first chunk includes that call's rest, so it teaches no reading speed."""


def _blend(old: float | None, new: float) -> float:
    return new if old is None else (1 - SPEED_WEIGHT) * old + SPEED_WEIGHT * new


@dataclass
class ServerSpeed:
    """How fast one server reads a prompt and writes an answer, learned from its streamed
    answers: the first chunk comes when the prompt is read, then about a token per chunk.

    A server such as llama.cpp reads a whole prompt even after the client has gone, so a
    call that cannot finish in the time left is not started at all (`estimate`); and the
    time a server still spends on a prompt whyrec abandoned (`busy_until`) is waited for
    in every estimate until its first chunk shows the server got through it. Such a server
    also keeps the state of the last prompt it read and reads a new one only from where it
    differs (`unread`): reading is measured and estimated per unread character."""

    prompt_seconds_per_char: float | None = None
    seconds_per_token: float | None = None
    answer_tokens: dict[str, float] = field(default_factory=dict)
    """Chunks (about tokens) of a typical answer, per purpose."""
    prompt_chars: dict[str, int] = field(default_factory=dict)
    """Unread characters of the last prompt of each purpose (to plan a call before writing
    it)."""
    last_prompt: str = ""
    """The prompt sent last: the server has its start in its cache."""
    busy_until: float = 0.0
    in_flight: int = 0
    """Calls at the server whose streams are still open (given up on or not)."""
    calls: int = 0
    skipped_in_a_row: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def learn(self, call: StreamedCall) -> None:
        """What one streamed call showed: how long the prompt took to read (when nothing
        of ours was ahead of it at the server) and how fast the answer came."""
        with self.lock:
            self.calls += 1
            self.skipped_in_a_row = 0
            self.prompt_chars[call.purpose] = call.chars
            if call.first is None:
                return
            if not call.queued and call.chars >= MIN_READ_CHARS:
                reading = max(call.first - call.started, 1e-3)
                self.prompt_seconds_per_char = _blend(
                    self.prompt_seconds_per_char, reading / max(call.chars, 1)
                )
            self.busy_until = min(self.busy_until, call.first)
            if call.chunks > 1:
                per_token = (call.end - call.first) / (call.chunks - 1)
                self.seconds_per_token = _blend(self.seconds_per_token, per_token)
            if call.complete:
                tokens = self.answer_tokens.get(call.purpose)
                self.answer_tokens[call.purpose] = _blend(tokens, call.chunks)

    def abandoned(self, call: StreamedCall) -> None:
        """A call was given up before its first chunk: the server goes on reading it (its
        first chunk, should it still come, ends the wait: `learn`)."""
        with self.lock:
            if self.prompt_seconds_per_char is not None and call.first is None:
                start = max(call.started, call.busy_until)
                done = start + call.chars * self.prompt_seconds_per_char
                self.busy_until = max(self.busy_until, done)

    def unread(self, prompt: str) -> int:
        """Characters of `prompt` after its common start with the prompt sent last: what a
        server that keeps its last prompt's state still has to read."""
        with self.lock:
            last = self.last_prompt
        shared = next(
            (i for i, (a, b) in enumerate(zip(last, prompt, strict=False)) if a != b),
            min(len(last), len(prompt)),
        )
        return len(prompt) - shared

    def sent(self, prompt: str) -> None:
        with self.lock:
            self.last_prompt = prompt

    def estimate(self, purpose: str, chars: int | None, max_tokens: int) -> float | None:
        """Seconds a call of `purpose` would take from now (waiting for the server's
        abandoned work included), or None before the server's speed is known."""
        with self.lock:
            if self.prompt_seconds_per_char is None:
                return None
            if chars is None:
                chars = self.prompt_chars.get(purpose)
                if chars is None:
                    return None
            waiting = max(0.0, self.busy_until - time.monotonic())
            seconds = waiting + chars * self.prompt_seconds_per_char
            if self.seconds_per_token is not None:
                tokens = min(float(max_tokens), self.answer_tokens.get(purpose, 0.0))
                seconds += tokens * self.seconds_per_token
            return seconds * SPEED_MARGIN

    def too_slow(self, purpose: str, chars: int, max_tokens: int, seconds: float) -> float | None:
        """The estimate when a call would not finish in `seconds`, else None. After
        `RETRY_SPEED_AFTER` such answers in a row one call goes anyway, so that an estimate
        from a busy hour does not keep a faster server unused for good."""
        estimate = self.estimate(purpose, chars, max_tokens)
        if estimate is None or estimate <= seconds:
            return None
        with self.lock:
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row > RETRY_SPEED_AFTER:
                self.skipped_in_a_row = 0
                return None
        return estimate

    def to_dict(self) -> dict:
        return {
            "prompt_ms_per_char": _ms(self.prompt_seconds_per_char),
            "ms_per_token": _ms(self.seconds_per_token),
            "answer_tokens": {k: round(v, 1) for k, v in self.answer_tokens.items()},
            "calls": self.calls,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def description_url(endpoint: str) -> str:
    """Where an OpenAI-compatible server built on FastAPI publishes its OpenAPI document:
    at the root of the host, above the versioned API path (…/v1)."""
    return re.sub(r"/v\d+$", "", endpoint.rstrip("/")) + "/openapi.json"


def _resolve(spec: dict, node: Any) -> Any:
    """`node` with a local `$ref` replaced by what it points at (one level)."""
    for _ in range(8):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
            return node
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node


def _branches(spec: dict, node: Any) -> list[dict]:
    """The object schemas a (possibly anyOf/oneOf/allOf/$ref) schema node allows."""
    node = _resolve(spec, node)
    if not isinstance(node, dict):
        return []
    found = [node] if "properties" in node or "enum" in node or "const" in node else []
    for key in ("anyOf", "oneOf", "allOf"):
        for child in node.get(key) or []:
            found += _branches(spec, child)
    return found


def read_description(spec: dict) -> dict | None:
    """What an OpenAPI document says the chat-completions request accepts:
    {"response_formats": [types], "tools": bool}, or None when it has no such route."""
    paths = spec.get("paths") if isinstance(spec, dict) else None
    route = next(
        (
            ops.get("post")
            for path, ops in (paths or {}).items()
            if path.rstrip("/").endswith("chat/completions") and isinstance(ops, dict)
        ),
        None,
    )
    try:
        schema = route["requestBody"]["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return None
    properties: dict = {}
    for branch in _branches(spec, schema):
        properties.update(branch.get("properties") or {})
    types: set[str] = set()
    for branch in _branches(spec, properties.get("response_format")):
        for kind in _branches(spec, (branch.get("properties") or {}).get("type")):
            types.update(str(v) for v in kind.get("enum") or [])
            if "const" in kind:
                types.add(str(kind["const"]))
    return {
        "response_formats": sorted(types),
        "tools": "tools" in properties,
        "stream": "stream" in properties,
    }


def described_form(formats: list[str]) -> str:
    """The richest structured-output form a server declares."""
    return next((f for f in STRUCTURED_FORMS[:2] if f in formats), "prompt")


@dataclass
class Dialect:
    """How one server and model are spoken to; learned once, shared by every client."""

    structured: str = "json_schema"
    tools: str | None = None
    """"native" or "json"; None until the server was asked."""
    fixed_structured: bool = False
    fixed_tools: bool = False
    stream: bool = False
    """Answers are streamed, so that a call abandoned at its deadline closes the
    connection and the server stops generating (set where the description declares it;
    servers that generate on for an answer nobody waits for delay every later call)."""
    described: str | None = None
    """What the server's own description said ("openapi.json: ..."), "none" when it
    publishes none, None until asked."""
    notes: list[str] = field(default_factory=list)
    """How the dialect was found, e.g. "json_schema rejected (500): json_object"."""
    speed: ServerSpeed = field(default_factory=ServerSpeed)

    def to_dict(self) -> dict:
        return {
            "structured": self.structured,
            "tools": self.tools,
            "stream": self.stream,
            "described": self.described,
            "notes": list(self.notes),
            "speed": self.speed.to_dict(),
        }


_DIALECTS: dict[tuple[str, str], Dialect] = {}
_DIALECTS_LOCK = threading.Lock()


def dialect_for(config: LLMConfig) -> Dialect:
    """The shared dialect of the configured server and model (fixed forms from config)."""
    key = (config.endpoint.rstrip("/"), config.model or "")
    with _DIALECTS_LOCK:
        known = _DIALECTS.get(key)
        if known is None:
            known = Dialect()
            if config.json_mode != "auto":
                known.structured, known.fixed_structured = config.json_mode, True
            if config.tools != "auto":
                known.tools, known.fixed_tools = config.tools, True
            _DIALECTS[key] = known
        return known


def forget_dialects() -> None:
    """Drop everything learned about servers (a server was reconfigured or replaced)."""
    with _DIALECTS_LOCK:
        _DIALECTS.clear()


def _schema_instruction(schema: dict, with_schema: bool) -> str:
    text = "Answer with one JSON object only, no other text."
    if with_schema:
        text += " It must follow this JSON schema:\n" + json.dumps(schema, separators=(",", ":"))
    return text


def with_instruction(messages: list[dict], instruction: str) -> list[dict]:
    """The messages with `instruction` appended to the system message (or added as one)."""
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n{instruction}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


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
    own_work: float = 0.0
    """Seconds whyrec's own work of a turn takes here lately (everything but waiting for
    the LLM): kept free at the end of the turn, so a late answer leaves time for it."""
    tail: float = 0.0
    """Seconds whyrec's work after a turn's last answer takes here lately: kept free
    after every call, however much of the turn's own work is done already."""
    started: float = field(default_factory=time.monotonic)
    waited: float = 0.0
    """Seconds this turn has waited for the LLM so far."""
    answered: float | None = None
    """When the turn's last call ended."""

    @classmethod
    def for_turn(
        cls, config: LLMConfig, budget: TokenBudget, own_work: float = 0.0, tail: float = 0.0
    ) -> CallContext:
        reserve = min(RESERVE_MAX, RESERVE_SHARE * config.timeout)
        deadline = time.monotonic() + config.timeout - reserve
        return cls(deadline, budget, own_work=own_work, tail=tail)

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def work_left(self) -> float:
        """Seconds of the turn's own work still to come (its usual total less what it has
        done so far): no call may run into them."""
        done = time.monotonic() - self.started - self.waited
        return max(0.0, self.own_work - done, self.tail)

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


def prompt_text(messages: list[dict]) -> str:
    """A request's prompt as text (its messages in order, so a shared start stays one)."""
    return json.dumps(messages, ensure_ascii=False)


def request_key(body: dict) -> str:
    """The cache key: a hash of the whole request body, canonically serialised."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def classify_error(exc: BaseException) -> tuple[str, int | None, float | None]:
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
        self._describe_lock = threading.Lock()
        self._down_until = 0.0

    @property
    def dialect(self) -> Dialect:
        return dialect_for(self.config)

    # ----- request shapes -----------------------------------------------------------------
    def body(
        self,
        messages: list[dict],
        schema: tuple[str, dict] | None = None,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        form: str | None = None,
        max_tokens: int | None = None,
    ) -> dict:
        """The chat.completions request body exactly as it goes on the wire, asking for
        structured output in `form` (default: the dialect's)."""
        if schema is not None:
            name, json_schema = schema
            form = form or self.dialect.structured
            if form == "json_schema":
                response_format: dict | None = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": json_schema, "strict": False},
                }
            elif form == "json_object":
                response_format = {"type": "json_object", "schema": grammar_schema(json_schema)}
                messages = with_instruction(messages, _schema_instruction(json_schema, False))
            else:
                response_format = None
                messages = with_instruction(messages, _schema_instruction(json_schema, True))
        body: dict[str, Any] = {
            "model": self.config.model or "default",
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
        }
        if schema is not None and response_format is not None:
            body["response_format"] = response_format
        if tools:
            body["tools"] = tools
            body["tool_choice"] = tool_choice or "auto"
        return body

    # ----- the call ----------------------------------------------------------------------
    def chat(
        self,
        ctx: CallContext,
        purpose: str,
        messages: list[dict],
        schema: tuple[str, dict] | None = None,
        tools: list[dict] | None = None,
        tool_choice: str | dict | None = None,
        max_tokens: int | None = None,
        form: str | None = None,
        reserve: float = 0.0,
    ) -> ChatResult | None:
        """Send one request in the dialect of the server (with retries, and simpler forms
        where the server rejects one); None, with the reason in the trace, on failure.
        `form` asks for structured output in that one form only (for probing); `reserve`
        keeps that many seconds of the turn for the work the answer would cause."""
        dialect = self.describe(ctx)
        forms: tuple[str | None, ...] = (None,)
        if form is not None:
            forms = (form,)
        elif schema is not None:
            start = STRUCTURED_FORMS.index(dialect.structured)
            forms = (dialect.structured,) if dialect.fixed_structured else STRUCTURED_FORMS[start:]
        record: dict[str, Any] = {"purpose": purpose, "attempts": 0, "tokens": 0}
        ctx.calls.append(record)
        started = time.monotonic()
        reserve = max(reserve, ctx.work_left())
        result, outcome = None, "failed"
        for index, trying in enumerate(forms):
            body = self.body(messages, schema, tools, tool_choice, trying, max_tokens)
            simpler_left = index + 1 < len(forms)
            record["form"] = trying or ("tools" if tools else "text")
            result, outcome, status = self._request(
                ctx, record, body, retry_errors=not simpler_left, reserve=reserve
            )
            if result is not None or not (simpler_left and outcome in REJECTED):
                break
            note = f"{trying} rejected ({status}): {forms[index + 1]}"
            record.setdefault("dialect", []).append(note)
        record["seconds"] = round(time.monotonic() - started, 3)
        ctx.answered = time.monotonic()
        ctx.waited += ctx.answered - started
        if not record.get("errors"):
            record.pop("errors", None)
        if result is None and form is None and record.get("dialect") and outcome in NOT_REJECTED:
            # the richer form was rejected and the simpler one was not (it ran out of time
            # or answered badly): the form was the cause, remember it now
            self.learn_structured(record["form"], record["dialect"])
        if result is None:
            record["outcome"] = outcome
            # the server answered, so a request form it rejects is not an outage; only an
            # unreachable server, or one failing the plainest request, cools down
            feature = tools is not None or (schema is not None and record["form"] != "prompt")
            if outcome in UNREACHABLE and not (feature and outcome == "server_error"):
                ctx.unreachable = True
                with self._lock:
                    self._down_until = time.monotonic() + self.config.cooldown
            return None
        if form is None and schema is not None and record["form"] != dialect.structured:
            self.learn_structured(record["form"], record.get("dialect", []))
        if result.cached:
            return result
        record.update(outcome="ok", tokens=result.tokens)
        ctx.budget.used += result.tokens
        if self.config.cache_size:
            with self._lock:
                self._cache[result.key] = result
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return result

    def estimate(
        self, purpose: str, messages: list[dict] | None = None, max_tokens: int | None = None
    ) -> float | None:
        """Seconds a call of `purpose` (with these messages, else the size its last prompt
        had) would take on this server now; None while that is not known."""
        dialect = self.dialect
        if not dialect.stream:
            return None
        chars = None if messages is None else dialect.speed.unread(prompt_text(messages))
        return dialect.speed.estimate(purpose, chars, max_tokens or self.config.max_tokens)

    def describe(self, ctx: CallContext) -> Dialect:
        """The dialect, after reading the server's description once (the trace's dialect
        says what it declared): the structured-output form and tool support it declares
        are taken as found, so no request of a form it does not accept is ever sent."""
        dialect = self.dialect
        if dialect.described is not None:  # fixed forms still learn whether to stream
            return dialect
        with self._describe_lock:
            if dialect.described is not None:
                return dialect
            started = time.monotonic()
            found, outcome = self._fetch_description(min(DESCRIPTION_SECONDS, ctx.remaining))
            seconds = time.monotonic() - started
            if outcome == "connection":
                return dialect  # nothing there yet: ask again next time
            with _DIALECTS_LOCK:
                if found is None:
                    dialect.described = "none"
                    dialect.notes.append(
                        f"no server description ({outcome}, {seconds:.2f} s): probing"
                    )
                    return dialect
                formats = found["response_formats"]
                dialect.described = (
                    f"openapi.json: response_format {', '.join(formats) or 'absent'}; "
                    f"tools {'accepted' if found['tools'] else 'absent'}; "
                    f"stream {'accepted' if found['stream'] else 'absent'}"
                )
                if not dialect.fixed_structured:
                    dialect.structured = described_form(formats)
                    dialect.notes.append(f"described ({seconds:.2f} s): {dialect.structured}")
                dialect.stream = found["stream"]
                if not dialect.fixed_tools and not found["tools"]:
                    dialect.tools = "json"
                    dialect.notes.append("tools: not in the description: json")
        return dialect

    def _fetch_description(self, seconds: float) -> tuple[dict | None, str]:
        """(what the server's OpenAPI document declares, outcome of the GET), through the
        SDK's own connection pool (a fresh HTTP client costs a tenth of a second)."""
        import httpx

        if seconds < MIN_CALL_SECONDS:
            return None, "no time left"
        url = description_url(self.config.endpoint)
        try:
            answer = self._openai.get(
                url, cast_to=httpx.Response, options={"timeout": seconds, "max_retries": 0}
            )
        except Exception as exc:  # the SDK's errors: absent (404), refused, timed out
            outcome, status, _ = classify_error(exc)
            return None, (f"absent ({status})" if status else outcome)
        try:
            found = read_description(answer.json())
        except ValueError:
            return None, "not JSON"
        return found, ("ok" if found is not None else "no chat route")

    def learn_structured(self, form: str, notes: list[str]) -> None:
        """Remember how this server takes structured output (unless the config fixed it)."""
        dialect = self.dialect
        with _DIALECTS_LOCK:
            if not dialect.fixed_structured:
                dialect.structured = form
                dialect.notes.extend(n for n in notes if n not in dialect.notes)

    def tool_mode(self, ctx: CallContext) -> str | None:
        """ "native" or "json" planning for this server, asking it once whether tool calls
        come back when one is required; None when that could not be found out now."""
        dialect = self.dialect
        if dialect.tools is not None:
            return dialect.tools
        result = self.chat(
            ctx,
            "probe_tools",
            PROBE_MESSAGES,
            tools=[PROBE_TOOL],
            tool_choice="required",
            max_tokens=PROBE_MAX_TOKENS,
        )
        outcome = ctx.calls[-1].get("outcome")
        if result is None and outcome not in REJECTED:
            return None  # unreachable or out of time: ask again on a later turn
        mode = "native" if result is not None and result.tool_calls else "json"
        with _DIALECTS_LOCK:
            if dialect.tools is None:
                dialect.tools = mode
                reason = "tool calls came back" if mode == "native" else "no tool calls came back"
                if result is None:
                    errors = ctx.calls[-1].get("errors") or [outcome]
                    reason = f"tool request rejected ({errors[-1]})"
                dialect.notes.append(f"tools: {reason}: {mode}")
        if result is not None:
            self.discard(result)
        return dialect.tools

    def _request(
        self, ctx: CallContext, record: dict, body: dict, retry_errors: bool, reserve: float = 0.0
    ) -> tuple[ChatResult | None, str, int | None]:
        """One request body, from the cache or with retries; (result, outcome, status)."""
        key = request_key(body)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            record.update(outcome="cached")
            return ChatResult(hit.content, hit.tool_calls, 0, key, cached=True), "cached", None
        skip = self._skip_reason(ctx, body, reserve)
        if skip:
            record.update(outcome="skipped", reason=skip)
            return None, "skipped", None
        outcome, status = "failed", None
        errors = record.setdefault("errors", [])
        prompt = prompt_text(body["messages"])
        for attempt in range(self.config.max_retries + 1):
            chars = self.dialect.speed.unread(prompt)
            remaining = ctx.remaining - reserve
            if remaining < MIN_CALL_SECONDS:
                outcome = "out_of_time"  # the turn's time is spent; the server is not down
                errors.append("deadline reached")
                break
            estimate = None
            if self.dialect.stream:
                estimate = self.dialect.speed.too_slow(
                    record["purpose"], chars, body["max_tokens"], remaining
                )
            if estimate is not None:
                # the server would still be reading it when the turn ends, and would go on
                # reading for nobody (a prompt is not interrupted): not started
                outcome = "out_of_time"
                errors.append(f"would not finish (about {estimate:.1f} s, {remaining:.1f} s left)")
                break
            record["attempts"] += 1
            call = StreamedCall(
                record["purpose"], chars, time.monotonic(), self.dialect.speed.busy_until
            )
            self.dialect.speed.sent(prompt)
            result, outcome, status, retry_after = self._attempt(body, key, remaining, call)
            if result is not None:
                return result, "ok", None
            errors.append(outcome if status is None else f"{outcome} ({status})")
            if outcome not in RETRYABLE or attempt == self.config.max_retries:
                break
            if outcome == "server_error" and not retry_errors:
                break  # a simpler form is tried first: the error may be the form's
            delay = self.config.backoff * 2**attempt
            if retry_after is not None:
                delay = max(delay, retry_after)
            if delay + MIN_CALL_SECONDS >= ctx.remaining - reserve:
                errors.append("no time left to retry")
                break
            time.sleep(delay)
        return None, outcome, status

    def discard(self, result: ChatResult) -> None:
        """Forget a cached response that turned out unusable, so it is not served again."""
        with self._lock:
            self._cache.pop(result.key, None)

    def _skip_reason(self, ctx: CallContext, body: dict, reserve: float = 0.0) -> str | None:
        if ctx.unreachable:
            return "the LLM failed earlier in this turn"
        if time.monotonic() < self._down_until:
            return "the LLM was unreachable moments ago (cooling down)"
        estimate = len(json.dumps(body["messages"])) // CHARS_PER_TOKEN
        if ctx.budget.remaining < estimate + self.config.max_tokens // 4:
            return f"session token budget spent ({ctx.budget.used} of {ctx.budget.limit})"
        if ctx.remaining - reserve < MIN_CALL_SECONDS:
            return "no time left in this turn"
        return None

    def _attempt(
        self, body: dict, key: str, remaining: float, call: StreamedCall
    ) -> tuple[ChatResult | None, str, int | None, float | None]:
        answering = threading.Event()
        if self.dialect.stream:
            future = self._pool.submit(self._stream, body, key, remaining, answering, call)
        else:
            future = self._pool.submit(self._send, body, key, remaining)
        try:
            return future.result(timeout=remaining), "ok", None, None
        except FutureTimeout:
            if self.dialect.stream:
                self.dialect.speed.abandoned(call)
            # the turn ran out of time, but the server is not down when it was already
            # answering, or when the call only had the end of the turn: no cool-down
            late = remaining < self.config.timeout / 2
            return None, ("out_of_time" if answering.is_set() or late else "timeout"), None, None
        except Exception as exc:  # the SDK's errors, and whatever a broken server causes
            outcome, status, retry_after = classify_error(exc)
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

    def _stream(
        self,
        body: dict,
        key: str,
        timeout: float,
        answering: threading.Event,
        timing: StreamedCall,
    ) -> ChatResult:
        """`_send`, streamed: the answer is read chunk by chunk and the connection closed
        as soon as the deadline has passed (the caller has given up by then), which tells
        the server to stop generating. `answering` is set at the first chunk; `timing`
        teaches the server's speed, even when the caller has given up."""
        deadline = time.monotonic() + timeout
        content: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = None
        speed = self.dialect.speed
        with speed.lock:
            timing.queued = speed.in_flight > 0
            speed.in_flight += 1
        try:
            stream = self._openai.chat.completions.create(**body, stream=True, timeout=timeout)
        except Exception:
            timing.end = time.monotonic()
            with speed.lock:
                speed.in_flight -= 1
            raise
        try:
            for chunk in stream:
                answering.set()
                timing.end = time.monotonic()
                timing.first = timing.first or timing.end
                timing.chunks += 1
                if time.monotonic() > deadline:
                    raise TimeoutError("abandoned at the deadline")
                usage = getattr(chunk, "usage", None) or usage
                for choice in chunk.choices or []:
                    delta = choice.delta
                    content.append(delta.content or "")
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "args": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["args"] += call.function.arguments or ""
            timing.complete = True
        finally:
            stream.close()
            with speed.lock:
                speed.in_flight -= 1
            speed.learn(timing)
        text = "".join(content) or None
        tool_calls = tuple(ToolCall(c["id"], c["name"], c["args"]) for c in calls.values())
        tokens = int(getattr(usage, "total_tokens", 0) or 0)
        if not tokens:
            tokens = (len(json.dumps(body["messages"])) + len(text or "")) // CHARS_PER_TOKEN
        return ChatResult(text, tool_calls, tokens, key)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._openai.close()
