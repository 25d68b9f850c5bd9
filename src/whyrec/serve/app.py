"""The FastAPI app: routes, authorization, errors, metrics and the chat page.

Routes stay thin: validate (pydantic), authorize, call `Service`, serialize. A user's
mistake (`WhyrecError`) is a 4xx with its one-line message; anything else is a 500 that
says only "internal error" with a request id, while the traceback goes to the log.
"""

import asyncio
import gc
import logging
import os
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

import orjson
from anyio import to_thread
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from whyrec import __version__
from whyrec.errors import AlreadySeenError, NotFoundError, WhyrecError
from whyrec.serve import schemas
from whyrec.serve.metrics import Metrics, MetricsMiddleware
from whyrec.serve.security import (
    BodySizeLimit,
    Caller,
    KeyRing,
    RateLimiter,
    SessionTokens,
    SharedRateLimiter,
    fingerprint,
)
from whyrec.serve.service import Service, ServiceConfig
from whyrec.store import ConflictError

log = logging.getLogger("whyrec.serve")

_OPEN_SESSION = {
    "path.session_id": "$response.body#/session_id",
    "header.Authorization": "Bearer {$response.body#/token}",
}
SESSION_LINKS = {
    "SendMessage": {"operationId": "send_message", "parameters": _OPEN_SESSION},
    "ReadSession": {"operationId": "read_session", "parameters": _OPEN_SESSION},
}
"""OpenAPI links: a created session is talked to and read with its id and token (what
stateful clients and fuzzers follow)."""

PATTERN_MESSAGES = {
    schemas.NOT_BLANK: "is blank",
}
"""Our patterns, said in words in a 422 (instead of the regular expression)."""
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
ERRORS = {
    status: {"model": schemas.ErrorResponse, "description": text}
    for status, text in {
        400: "The request cannot be served (unknown user, item, field or value)",
        401: "Missing or wrong API key / session token",
        404: "No such session or item",
        409: "The session moved on (resend), or the item is already in the history",
        413: "Body too large",
        422: "Invalid input",
        429: "Rate limited (see Retry-After)",
    }.items()
}


class FastJSON(JSONResponse):
    """Our payloads are already plain JSON types: dump them directly, skipping FastAPI's
    recursive encoder (a third of a recommend request's time), and with orjson, which
    writes an explained top-10 (25 KB) in 0.02 ms where the json module takes 0.3 ms."""

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, details: list[str] | None = None, headers=None):
    body = {"error": {"status": status, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


class Unauthorized(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(401, message)


def create_app(service: Service, config: ServiceConfig) -> FastAPI:
    """The ASGI app over a ready `Service` (tests build one around a fixture bundle)."""
    keys = KeyRing(config.api_keys)
    limiter = (
        SharedRateLimiter(rate_table(config.shared_dir), config.rate_limit, config.rate_burst)
        if config.shared_dir
        else RateLimiter(config.rate_limit, config.rate_burst)
    )
    metrics = Metrics()
    service.answers.record = lambda outcome: metrics.answers.labels(outcome).inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Without an LLM, requests are CPU-bound Python: extra worker threads only fight
        # over the GIL. Measured with wrk at 32 clients, chat turns went from 109-116/s
        # (4 or 40 threads) to 157/s with one; LLM turns wait on the network, so 40.
        threads = config.worker_threads or (40 if config.llm is not None else 1)
        to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="whyrec",
        version=__version__,
        description=(
            "Explained recommendations and a conversational recommender over one trained "
            "bundle. Write endpoints take an `X-API-Key` when the server has keys; a chat "
            "session is opened by its token (`Authorization: Bearer`)."
        ),
        responses=ERRORS,
    )
    app.state.service = service

    # ----- who is calling --------------------------------------------------------------
    # `async` on purpose: these checks are cheap, and a sync dependency costs a hop to the
    # worker threads and back per request, which under load is most of a request's time.
    async def caller(
        request: Request,
        # typed `str` with a None default: a header is a string or absent, never null
        x_api_key: Annotated[
            str, Header(max_length=500, examples=["your-api-key"])  # noqa: RUF013
        ] = None,
        authorization: Annotated[
            str,  # noqa: RUF013
            Header(max_length=500, examples=["Bearer TOKEN"]),
        ] = None,
    ) -> Caller:
        rate = None  # the default limit, for sessions and anonymous callers
        if x_api_key is not None and keys.required:  # a server without keys ignores them
            found = keys.lookup(x_api_key)
            if found is None:
                raise Unauthorized("unknown API key")
            who = Caller("key", f"key:{fingerprint(x_api_key)}")
            (rate,) = found
            if rate is None:
                return who  # a key without a rate of its own is not limited
        elif authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization must be 'Bearer TOKEN'")
            who = Caller("session", f"token:{fingerprint(token.strip())}", token=token.strip())
        else:
            host = request.client.host if request.client else "unknown"
            who = Caller("anonymous", f"ip:{host}")
        wait = limiter.retry_after(who.name, rate)
        if wait is not None:
            metrics.rate_limited.inc()
            raise HTTPException(
                429,
                f"rate limit of {limiter.limits(rate)[0]:g} requests a second exceeded; "
                "retry later",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        return who

    async def open_endpoint(who: Annotated[Caller, Depends(caller)]) -> Caller:
        """Recommend, explain, search, start a session: a key when the server has keys."""
        if keys.required and not who.has_key:
            raise Unauthorized("this server needs an X-API-Key")
        return who

    opened = SessionTokens()

    async def session_access(
        session_id: SessionId, who: Annotated[Caller, Depends(caller)]
    ) -> Caller:
        """A key, or this session's own token: nobody reads another person's session.

        A token that opened a session once is remembered (tokens never change), so later
        turns skip the database and the hop to a worker thread that reading it needs."""
        if who.has_key and keys.required:
            return who
        if who.token is not None:
            if opened.knows(session_id, who.token):
                return who
            if await run_in_threadpool(service.store.check_token, session_id, who.token):
                opened.remember(session_id, who.token)
                return who
        raise Unauthorized("this session needs its token (Authorization: Bearer TOKEN)")

    Open = Annotated[Caller, Depends(open_endpoint)]
    InSession = Annotated[Caller, Depends(session_access)]

    # ----- errors ------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        details = []
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
            said = PATTERN_MESSAGES.get((problem.get("ctx") or {}).get("pattern"))
            said = said or problem.get("msg", "invalid")
            details.append(f"{where}: {said}" if where else said)
        return _error(422, details[0] if details else "invalid request", details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(WhyrecError)
    async def user_error(request: Request, exc: WhyrecError):
        status = 400
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ConflictError | AlreadySeenError):
            status = 409
        return _error(status, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s %s failed (id %s)", request.method, request.url.path, request_id,
                  exc_info=exc)  # fmt: skip
        return _error(500, f"internal error (request id {request_id}); see the server log")

    # ----- API ------------------------------------------------------------------------
    # A cached answer is a dictionary look-up: served on the event loop, it skips the hop to
    # a worker thread (measured, 1 worker: warm 1318 → 2438 requests/s, p99 36 → 15 ms). A
    # miss is a few ms of CPU and goes to the worker thread, whose FIFO queue keeps the
    # wait fair (computed on the loop, cold p99 went from 129 ms to 840 ms at 32 clients).
    # The look-up first reads new feedback: local with SQLite, a round trip with
    # PostgreSQL, so there the whole request goes to the worker thread.
    look_up_on_loop = service.store.dialect == "sqlite"

    @app.post("/v1/recommend", response_model=schemas.RecommendResponse, tags=["recommend"])
    async def recommend(body: schemas.RecommendRequest, who: Open):
        """Top-k items for a known user or a history of item ids / titles, explained."""
        looked_up = look_up_on_loop and service.answers.size > 0
        answer = service.cached_recommendation(body) if looked_up else None
        if answer is not None:
            # let the loop write other answers first: without this yield, a saturated
            # loop starved some connections (measured, 1 worker, 64 clients: p99 400 ms
            # → 90 ms, and 2338 → 3328 requests/s)
            await asyncio.sleep(0)
        else:
            # the look-up already read new feedback: not twice per request
            answer = await run_in_threadpool(service.recommend, body, not looked_up)
        return FastJSON(answer)

    @app.post("/v1/explain", response_model=schemas.ExplainResponse, tags=["recommend"])
    def explain(body: schemas.ExplainRequest, who: Open):
        """Why (or why not) one item for a user or a history."""
        return FastJSON(service.explain(body))

    @app.get("/v1/items/search", response_model=schemas.SearchResponse, tags=["items"])
    def search(
        who: Open,
        q: Annotated[
            str,
            Query(
                min_length=1, max_length=200, pattern=schemas.NOT_BLANK, description="Title words"
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ):
        """Items whose titles match the words (typos and partial titles allowed)."""
        return service.search(q, limit)

    @app.post(
        "/v1/sessions",
        status_code=201,
        response_model=schemas.SessionCreated,
        tags=["chat"],
        operation_id="start_session",
        responses={201: {"description": "Created", "links": SESSION_LINKS}},
    )
    def start_session(who: Open, body: schemas.SessionRequest | None = None):
        """Start a chat session; keep its token to talk in it and read it back."""
        created = service.start_session(body.user_id if body else None)
        metrics.sessions_created.inc()
        return created

    @app.post(
        "/v1/sessions/{session_id}/messages",
        response_model=schemas.TurnResponse,
        tags=["chat"],
        operation_id="send_message",
    )
    def send_message(session_id: SessionId, body: schemas.MessageRequest, who: InSession):
        """One turn: words, or a like/dislike on an item (stored as feedback too)."""
        turn = service.send(session_id, body)
        metrics.turns.labels("reaction" if body.reaction else "text").inc()
        if body.reaction:
            metrics.feedback.labels("like" if body.reaction.liked else "dislike").inc()
        return FastJSON(turn)

    @app.get(
        "/v1/sessions/{session_id}",
        response_model=schemas.SessionView,
        tags=["chat"],
        operation_id="read_session",
    )
    def read_session(session_id: SessionId, who: InSession):
        """The session with all its messages, to resume it."""
        return FastJSON(service.session_view(session_id))

    @app.post(
        "/v1/feedback", status_code=201, response_model=schemas.FeedbackResponse, tags=["feedback"]
    )
    def feedback(body: schemas.FeedbackRequest, who: Annotated[Caller, Depends(caller)]):
        """Append interactions, ratings, likes and dislikes durably (all or none).

        With an API key, for any user; with a session token, only for that session.
        """
        if not (who.has_key or (not keys.required and who.kind == "anonymous")):
            sessions = {e.session_id for e in body.events}
            users = {e.user_id for e in body.events} - {None}
            (session_id,) = sessions if len(sessions) == 1 else (None,)
            opens = session_id is not None and who.token is not None
            if not opens or users or not service.store.check_token(session_id, who.token):
                raise Unauthorized(
                    "feedback needs an X-API-Key, or the token of the one session it is about"
                )
        source = who.name if who.kind != "anonymous" else None
        stored = service.add_feedback(body.events, source)
        for event in body.events:
            metrics.feedback.labels(event.kind).inc()
        return stored

    # ----- operations -------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    def healthz():
        """Liveness and readiness: the bundle is loaded and the database answers."""
        try:
            service.store.ping()
        except Exception:
            log.exception("database ping failed")
            return _error(503, "the database does not answer")
        bundle = service.engine.bundle
        return {
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),  # which worker answered, under --workers N
            "model": bundle.model.name,
            "dataset": bundle.train.name,
            "items": len(service.catalog),
            "users": bundle.train.n_users,
            "store": service.store.dialect,
            "schema_version": service.store.schema_version(),
        }

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus():
        """Prometheus text format: requests, latencies, sessions, turns, feedback."""
        counts = await run_in_threadpool(service.store.counts)
        return Response(metrics.exposition(counts), media_type="text/plain; version=0.0.4")

    # ----- the chat page -------------------------------------------------------------------
    static = resources.files("whyrec.serve") / "static"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    document_catalog(app, service)

    # outermost first: metrics see everything, the size limit runs before any parsing
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    return app


def document_catalog(app: FastAPI, service: Service) -> None:
    """Put the served catalog's filter fields and values into the OpenAPI document, so
    it says exactly which filters the server accepts (any other field is refused)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            filters = schema.get("components", {}).get("schemas", {}).get("Filters")
            if filters is not None:
                shape = schemas.catalog_filter_schema(service.filter_values())
                for side in ("include", "exclude"):
                    documented = filters["properties"][side]
                    kept = {
                        k: documented[k]
                        for k in ("title", "default", "examples")
                        if k in documented
                    }
                    filters["properties"][side] = {**kept, **shape}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def app_from_config(config: ServiceConfig) -> FastAPI:
    return create_app(Service.from_config(config), config)


def rate_table(shared_dir: str) -> str:
    """The rate-limit table that all workers of one `whyrec serve` map."""
    return os.path.join(shared_dir, "rate-limits.bin")


def limit_threads() -> None:
    """Requests run in parallel threads (or N processes share the cores): nested BLAS/torch
    threads would only oversubscribe. Set before the service loads, so its warm-up obeys it."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def tune_collector() -> None:
    """Garbage-collector settings for a long-lived serving process, once the service is warm.

    The loaded bundle, catalog and caches live as long as the process: move them out of
    the collector's sight, or every full collection walks millions of objects and stalls
    all requests (seen as 300+ ms p99 spikes under load). A request allocates thousands of
    small objects; collecting every 700 of them (CPython's default) runs the collector
    several times per request. Called by `whyrec serve` (and each of its workers), never by
    `Service` itself, so building a service in a test or a notebook leaves the interpreter
    as it was.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def prepare_server_process() -> None:
    """Process-wide tuning of a single serving process whose service is loaded and warm."""
    limit_threads()
    tune_collector()


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker process of `whyrec serve --workers N`: the
    parent put the config in the environment (see ServiceConfig.to_environment)."""
    limit_threads()  # N processes on the cores already: no nested BLAS threads
    config = ServiceConfig.from_environment()
    app = app_from_config(config)
    if config.warm_up:  # a cold service still has lazy pieces to build: tune after those
        tune_collector()
    return app
