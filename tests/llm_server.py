"""A scripted OpenAI-compatible server on loopback, for tests and benchmarks.

Real HTTP (a threaded `http.server`), so the whole client path runs: the `openai` SDK,
httpx, sockets, timeouts. Each request is recorded (`server.requests`) and answered by
the next scripted behaviour for its kind, else by `server.responder(body)`:

    with ScriptedLLM() as server:
        server.script("dialogue_acts", error(429, retry_after=0), json_reply({...}))
        server.script("grounded_reply", slow(5.0, json_reply({...})), drop())
        config = LLMConfig(base_url=server.base_url, model="test", timeout=1)

A request's kind is the name of its JSON schema (`response_format.json_schema.name`),
"plan" for a request with tools ("probe_tools" for whyrec's question whether tool calls
work), else the `task: NAME` line of its system message.
Behaviours misbehave on demand: malformed JSON, wrong fields, unknown ids, slow answers,
429/500 errors, dropped connections, garbage bodies.

`dialect` makes the server speak like a family of real servers, before any script:
"openai" understands every request form; "llama.cpp" answers a `json_schema` response
format with 500 (as llama-cpp-python's server does), accepts `json_object` with a
`schema`, and returns no tool calls unless one function is forced; "plain" answers 400 to
any response format and to tools. `describe=True` also publishes an OpenAPI document at
`/openapi.json` (as FastAPI-based servers do) declaring exactly what its dialect accepts;
`server.gets` records the paths of GET requests. A request with `"stream": true` is
answered as server-sent events, a chunk every `Behavior.chunk_delay` seconds; a client
that closes the connection midway is counted in `server.abandoned`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TASK = re.compile(r"task:\s*(\w+)")


@dataclass
class Behavior:
    """What the server does with one request."""

    kind: str  # "content", "tools", "error", "drop", "garbage"
    content: str | None = None
    tool_calls: list[dict] = field(default_factory=list)
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    tokens: int | None = None
    chunk_delay: float = 0.0
    """Seconds between streamed chunks (a server generating slowly)."""


def reply(text: str, tokens: int | None = None) -> Behavior:
    """A normal answer whose message content is `text` (any string, valid JSON or not)."""
    return Behavior("content", content=text, tokens=tokens)


def json_reply(payload: Any, tokens: int | None = None) -> Behavior:
    return reply(json.dumps(payload), tokens)


def tool_reply(*calls: tuple[str, Any]) -> Behavior:
    """Tool calls, each (name, arguments): a dict is serialised, a string sent as is."""
    return Behavior(
        "tools",
        tool_calls=[
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for i, (name, args) in enumerate(calls)
        ],
    )


def error(status: int, retry_after: float | None = None) -> Behavior:
    return Behavior("error", status=status, retry_after=retry_after)


def slow(seconds: float, then: Behavior) -> Behavior:
    """`then`, after `seconds` of silence."""
    return Behavior(
        then.kind, then.content, then.tool_calls, then.status, then.retry_after, seconds
    )


def trickle(text: str, chunk_delay: float) -> Behavior:
    """`reply(text)`, streamed a few characters at a time (only when streaming is asked)."""
    return Behavior("content", content=text, chunk_delay=chunk_delay)


def drop() -> Behavior:
    """Close the connection without answering."""
    return Behavior("drop")


def garbage() -> Behavior:
    """HTTP 200 whose body is not JSON at all."""
    return Behavior("garbage")


DIALECTS = ("openai", "llama.cpp", "plain")
DECLARED_FORMATS = {
    "openai": ["text", "json_object", "json_schema"],
    "llama.cpp": ["text", "json_object"],
}


def description(dialect: str) -> dict:
    """An OpenAPI document shaped as FastAPI writes one (request model behind a $ref,
    optional fields as anyOf with null), declaring what a server of `dialect` accepts."""
    properties: dict[str, Any] = {"model": {"type": "string"}, "messages": {"type": "array"}}
    schemas: dict[str, Any] = {}
    if dialect in DECLARED_FORMATS:
        schemas["ResponseFormat"] = {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": DECLARED_FORMATS[dialect]}},
            "required": ["type"],
        }
        properties["response_format"] = {
            "anyOf": [{"$ref": "#/components/schemas/ResponseFormat"}, {"type": "null"}]
        }
        properties["tools"] = {"anyOf": [{"type": "array"}, {"type": "null"}]}
        properties["stream"] = {"type": "boolean", "default": False}
    schemas["ChatRequest"] = {"type": "object", "properties": properties}
    body = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}
    }
    return {
        "openapi": "3.1.0",
        "paths": {"/v1/chat/completions": {"post": {"requestBody": body}}},
        "components": {"schemas": schemas},
    }


def _task(body: dict) -> str | None:
    for message in body.get("messages", []):
        if message.get("role") == "system":
            found = _TASK.search(str(message.get("content", "")))
            if found:
                return found.group(1)
    return None


def request_kind(body: dict) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return str(fmt.get("json_schema", {}).get("name", "json"))
    if body.get("tools"):
        return "probe_tools" if _task(body) == "probe_tools" else "plan"
    return _task(body) or "chat"


def dialect_answer(dialect: str, body: dict) -> Behavior | None:
    """What a server of this dialect answers on its own (a rejection, or its reply to
    the tool probe), or None to let the script or responder answer."""
    fmt = (body.get("response_format") or {}).get("type")
    forced = isinstance(body.get("tool_choice"), dict)
    if dialect == "plain" and (fmt or body.get("tools")):
        return error(400)
    if dialect == "llama.cpp" and fmt not in (None, "text", "json_object"):
        return error(500)
    if request_kind(body) == "probe_tools":
        if dialect == "openai" or forced:
            return tool_reply(("ping", {"ok": True}))
        return reply("pong")
    return None


def request_data(body: dict) -> Any:
    """The JSON payload of the first user message: the facts whyrec sends (a repair or a
    reflection adds later user messages, the facts stay first)."""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            try:
                return json.loads(message.get("content") or "")
            except (TypeError, ValueError):
                return message.get("content")
    return None


class ScriptedLLM:
    """The server; use as a context manager or call `start`/`stop`."""

    def __init__(
        self,
        responder: Callable[[dict], Behavior] | None = None,
        dialect: str = "openai",
        describe: bool = False,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; one of {DIALECTS}")
        self.dialect = dialect
        self.describe = describe
        self.gets: list[str] = []
        self.abandoned = 0
        self.responder = responder or (lambda body: error(500))
        self.requests: list[dict] = []
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # The OS may give this server an earlier test's loopback port: what whyrec learned
        # about that server (its dialect, say "no tool calls") must not be taken for ours.
        from whyrec.llm.client import forget_dialects

        forget_dialects()
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, kind: str, *behaviors: Behavior) -> None:
        """Queue behaviours for requests of one kind ("*" matches any kind)."""
        with self._lock:
            self._scripts[kind].extend(behaviors)

    def kinds(self) -> list[str]:
        return [request_kind(r["body"]) for r in self.requests if r["body"] is not None]

    def _next(self, body: dict) -> Behavior:
        kind = request_kind(body)
        answer = dialect_answer(self.dialect, body)
        if answer is not None and (answer.kind == "error" or not self._scripts[kind]):
            return answer
        with self._lock:
            for name in (kind, "*"):
                if self._scripts[name]:
                    return self._scripts[name].popleft()
        try:
            return self.responder(body)
        except Exception as exc:  # a broken script shows up as a 500, not a hung client
            return Behavior("error", status=500, content=repr(exc))

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- HTTP ------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.gets.append(self.path)
                if server.describe and self.path == "/openapi.json":
                    self._send(200, description(server.dialect))
                elif self.path.rstrip("/").endswith("/models"):
                    model = {"id": "test-model", "object": "model", "owned_by": "whyrec-tests"}
                    self._send(200, {"object": "list", "data": [model]})
                else:
                    self._send(404, {"error": {"message": "unknown route", "type": "invalid"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                record = {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                with server._lock:
                    server.requests.append(record)
                if body is None or not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "unknown route", "type": "invalid"}})
                    return
                behavior = server._next(body)
                if behavior.delay and server._stopping.wait(behavior.delay):
                    return
                self._perform(behavior, body)

            def _perform(self, behavior: Behavior, body: dict) -> None:
                if behavior.kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if behavior.kind == "garbage":
                    self._send(200, None, raw=b"<html>upstream exploded")
                    return
                if behavior.kind == "error":
                    headers = {}
                    if behavior.retry_after is not None:
                        headers["retry-after"] = str(behavior.retry_after)
                    payload = {"error": {"message": f"scripted {behavior.status}", "type": "x"}}
                    self._send(behavior.status, payload, headers=headers)
                    return
                message: dict[str, Any] = {"role": "assistant", "content": behavior.content}
                finish = "stop"
                if behavior.kind == "tools":
                    message = {"role": "assistant", "content": None}
                    message["tool_calls"] = behavior.tool_calls
                    finish = "tool_calls"
                if body.get("stream"):
                    self._stream(message, body, behavior.chunk_delay)
                    return
                prompt = len(json.dumps(body.get("messages", []))) // 4
                completion = behavior.tokens
                if completion is None:
                    completion = len(json.dumps(message)) // 4
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "test"),
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    },
                )

            def _stream(self, message: dict, body: dict, chunk_delay: float) -> None:
                """Server-sent events as OpenAI streams them: deltas, then [DONE]."""
                text = message.get("content") or ""
                deltas = [{"role": "assistant", "content": ""}]
                deltas += [{"content": text[i : i + 8]} for i in range(0, len(text), 8)]
                for i, call in enumerate(message.get("tool_calls") or []):
                    deltas.append({"tool_calls": [{"index": i, **call}]})
                self.close_connection = True
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    for delta in deltas:
                        chunk = {
                            "id": "chatcmpl-test",
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": body.get("model", "test"),
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        if chunk_delay and server._stopping.wait(chunk_delay):
                            return
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:  # the client closed the stream: stop "generating"
                    with server._lock:
                        server.abandoned += 1

            def _send(
                self,
                status: int,
                payload: Any,
                headers: dict | None = None,
                raw: bytes | None = None,
            ) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (its timeout): nothing to tell it
                    pass

        return Handler


def helpful(body: dict) -> Behavior:
    """A well-behaved stand-in for whyrec's requests: no plan (the policy's list stands),
    replies that re-rank the candidates (reversed) and cite each one's shared values, and
    dialogue acts that only say "recommend". Tests script anything more specific."""
    kind = request_kind(body)
    data = request_data(body)
    if kind == "plan":
        if not body.get("tools"):  # a JSON plan, for a server without tool calls
            return json_reply({"steps": []})
        return reply("The policy's list serves this message.")
    if kind == "grounded_reply" and isinstance(data, dict):
        candidates = data.get("candidates") or []
        ids = [c["item_id"] for c in candidates][::-1]
        lines = [
            f"[[{c['item_id']}]]: like what you liked, {', '.join(c['shares']) or 'a good fit'}."
            for c in candidates[::-1]
        ]
        facts = data.get("facts") or []
        if not lines and facts:
            lines = [json.dumps(facts)[:0] + "Here is what I found."]
        return json_reply({"order": ids, "text": "Picked for you.\n" + "\n".join(lines)})
    if kind == "dialogue_acts":
        return json_reply({"intents": ["recommend"]})
    if kind == "probe_json":  # `whyrec llm check`'s test call
        return json_reply({"sum": 5})
    if kind == "simulated_user" and isinstance(data, dict):
        return json_reply({"message": "something I would enjoy, please"})
    return error(500)
