"""What the HTTP API does, as plain Python over the library (no HTTP in here).

Each method calls what the CLI calls: `Engine.recommend` / `Engine.explain` for lists
and reasons, `Conversation` sessions for chat turns, the store for feedback. The FastAPI
routes in `app.py` only parse, authorize and serialize.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from whyrec.bundle import Bundle
from whyrec.core import Query
from whyrec.engine import Engine
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.explain.render import to_data
from whyrec.feedback import is_positive
from whyrec.filters import ItemFilter
from whyrec.llm import LLMConfig, open_conversation
from whyrec.serve import schemas
from whyrec.store import FeedbackEvent, Store, open_store, read_feedback

CARD_VALUES = 8
"""At most this many values per attribute field on a card (tags can run long)."""


@dataclass
class ServiceConfig:
    """How `whyrec serve` runs; every field has a flag (see commands/serve.py)."""

    bundle: Path
    db: str = "whyrec-sessions.sqlite"
    api_keys: list[str] = field(default_factory=list)
    """Accepted keys, each `KEY` (unlimited) or `KEY:RATE` (requests a second)."""
    rate_limit: float = 20.0
    """Requests a second on average per session or anonymous caller (0: no limit); keys
    have their own rates."""
    rate_burst: int = 40
    max_body_bytes: int = 64 * 1024
    cors_origins: list[str] = field(default_factory=list)
    warm_up: bool = True
    llm: LLMConfig | None = None
    """An OpenAI-compatible LLM in front of the chat turns (None: the embedded engine)."""
    worker_threads: int | None = None
    """Threads running request handlers: one when they are CPU-bound Python holding the
    GIL, many (40) with an LLM configured, whose turns mostly wait on the network."""
    cache_size: int = 4096
    """Recent /v1/recommend answers kept (0: none). Keyed by the request and the person's
    current history, so folded-in feedback is a different key, never a stale answer."""
    workers: int = 1
    """Server processes on the port, one SO_REUSEPORT socket each (serve/workers.py)."""
    shared_dir: str | None = None
    """With several workers: the folder holding their shared rate-limit table (the parent
    process makes it and removes it at exit)."""

    ENVIRONMENT = "WHYREC_SERVE_CONFIG"
    """How the parent hands this config to worker processes it spawns."""

    def to_environment(self) -> None:
        fields = {**self.__dict__, "bundle": str(self.bundle)}
        fields["llm"] = self.llm.model_dump() if self.llm is not None else None
        os.environ[self.ENVIRONMENT] = json.dumps(fields)

    @classmethod
    def from_environment(cls) -> ServiceConfig:
        raw = os.environ.get(cls.ENVIRONMENT)
        if raw is None:
            raise WhyrecError(f"{cls.ENVIRONMENT} is not set (start workers with whyrec serve)")
        fields = json.loads(raw)
        fields["bundle"] = Path(fields["bundle"])
        if fields["llm"] is not None:
            fields["llm"] = LLMConfig(**fields["llm"])
        return cls(**fields)


class AnswerCache:
    """A small thread-safe LRU of computed answers.

    The model and catalog of a running service never change, so an answer is a pure
    function of the request and the person's history; repeated requests (page reloads,
    polling widgets) then cost a lookup instead of a scoring and an explanation.
    """

    def __init__(self, size: int, record: Callable[[str], None] | None = None) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self.record = record
        """Called with "hit" or "miss" (the app counts them in /metrics)."""
        self._entries: OrderedDict[object, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> dict | None:
        """The cached answer (counted as a hit), or None."""
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
                self.hits += 1
        if answer is not None and self.record:
            self.record("hit")
        return answer

    def get_or_compute(self, key: object, compute: Callable[[], dict]) -> dict:
        if self.size <= 0:
            return compute()
        answer = self.get(key)
        if answer is not None:
            return answer
        answer = compute()  # outside the lock: two misses of one key both compute, harmlessly
        with self._lock:
            self.misses += 1
            self._entries[key] = answer
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        if self.record:
            self.record("miss")
        return answer


class FeedbackCursor:
    """Which stored feedback events this process has already folded into its engine.

    Every process (and every worker of `--workers N`) follows the store, so feedback
    written through any of them reaches all. Ids are handed out at insert time, and on
    PostgreSQL a transaction that took a smaller id may commit after one that took a
    larger id; so the cursor keeps a watermark (everything at or below it was seen) plus
    the ids seen above it. It moves past a gap once the event above the gap is
    `GAP_GRACE` seconds old: by then the gap is a rolled-back insert or ids a crash
    skipped, never a transaction still in flight.
    """

    GAP_GRACE = 30.0

    def __init__(self) -> None:
        self.watermark = 0
        self._seen_above: dict[int, float] = {}

    def unseen(self, events: list[FeedbackEvent]) -> list[FeedbackEvent]:
        """The events (read with id > watermark) not folded in yet; marks them seen."""
        now = time.time()
        fresh = [e for e in events if e.id is not None and e.id not in self._seen_above]
        for event in fresh:
            self._seen_above[event.id] = event.received or now
        for event_id in sorted(self._seen_above):
            gap_below = event_id != self.watermark + 1
            if gap_below and now - self._seen_above[event_id] < self.GAP_GRACE:
                break
            self.watermark = event_id
            del self._seen_above[event_id]
        return fresh


class Service:
    """One loaded bundle, its conversation machinery and the store, shared by all requests."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        warm_up: bool = True,
        llm: LLMConfig | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.engine = engine
        self.catalog = engine.catalog
        self.store = store
        # the same entry point as `whyrec chat`: embedded unless an LLM is configured
        self.conversation = open_conversation(engine, store=store, llm=llm)
        self._session_locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._locks_guard = threading.Lock()
        self.answers = AnswerCache(cache_size)
        self._cards: dict[int, dict] = {}
        self._feedback = FeedbackCursor()
        self._following = threading.Lock()
        self.catch_up()
        if warm_up:
            self.warm_up()

    @classmethod
    def from_config(cls, config: ServiceConfig) -> Service:
        engine = Engine(Bundle.load(config.bundle))
        return cls(engine, open_store(config.db), config.warm_up, config.llm, config.cache_size)

    def catch_up(self) -> int:
        """Fold in feedback stored since the last look, by any process; returns how many
        interactions changed a history. One indexed range query when nothing is new."""
        with self._following:
            fresh = self._feedback.unseen(read_feedback(self.store, self._feedback.watermark))
            return self.fold_in(fresh) if fresh else 0

    def warm_up(self) -> None:
        """Build the lazy pieces (explainer, encoder, caches) before the first request:
        one recommendation, then the conversation's own warm-up (its scratch turns go to
        a store in memory, so the real store gets nothing)."""
        user = str(self.engine.bundle.train.user_ids[0])
        self.engine.recommend(self.engine.user_history(user), k=10, user_id=user)
        self.conversation.warm_up()

    # ----- items ---------------------------------------------------------------------
    def card(self, position: int) -> dict:
        """Title, year and attributes of an item (built once per item: the catalog is fixed
        for the life of the service; callers copy it into their answers)."""
        card = self._cards.get(position)
        if card is None:
            catalog = self.catalog
            card = {
                "item_id": catalog.item_ids[position],
                "title": catalog.titles[position],
                "year": catalog.year(position),
                "attributes": {
                    name: list(values[position][:CARD_VALUES])
                    for name, values in catalog.attributes.items()
                    if values[position]
                },
            }
            self._cards[position] = card
        return card

    def filter_values(self) -> dict[str, list[str]]:
        """Every attribute field and its values, as the API's filters accept them."""
        limit = schemas.MAX_VALUE_LENGTH
        return {
            name: sorted(v for v in self.catalog.value_counts(name) if 0 < len(v) <= limit)
            for name in self.catalog.fields
            if 0 < len(name) <= limit
        }

    def search(self, query: str, limit: int) -> dict:
        found = self.catalog.search(query, limit, self.engine.popularity)
        return {"items": [self.card(p) for p, _ in found]}

    def _query(self, request: schemas.Person) -> Query:
        """The request as a `Query`, resolved by the engine exactly as the CLI's is."""
        item_filter = None
        if request.filters is not None:
            f = request.filters
            item_filter = ItemFilter(
                {k: set(v) for k, v in f.include.items()},
                {k: set(v) for k, v in f.exclude.items()},
                f.year_min,
                f.year_max,
            )
        text = getattr(request, "query", None)
        return self.engine.query(request.user_id, request.history, item_filter, request.k, text)

    def recommend(self, request: schemas.RecommendRequest, catch_up: bool = True) -> dict:
        """The answer to POST /v1/recommend (cached); `catch_up=False` when the caller has
        just read new feedback itself."""
        if catch_up:
            self.catch_up()
        query = self._query(request)
        return self.answers.get_or_compute(
            self._answer_key(request, query.history),
            lambda: self._recommend(request, query),
        )

    def cached_recommendation(self, request: schemas.RecommendRequest) -> dict | None:
        """The answer `recommend` would give, if it is cached; None otherwise (a miss is
        not counted: `recommend` counts it when it computes)."""
        self.catch_up()
        return self.answers.get(self._answer_key(request, self._query(request).history))

    def _answer_key(self, request: schemas.RecommendRequest, history: np.ndarray) -> tuple:
        """The request and the person's current history and seen items: feedback, liked
        or not, changes the key."""
        seen = self.engine.feedback.seen_of(request.user_id)
        return (
            request.model_dump_json(),
            np.asarray(history, dtype=np.int64).tobytes(),
            seen.tobytes(),
        )

    def _recommend(self, request: schemas.RecommendRequest, query: Query) -> dict:
        items = self.engine.run(query, explain=request.explain, top_reasons=request.reasons)
        entries = items.to_dicts(with_explanation=request.explain)
        return {
            "user_id": request.user_id,
            "items": [
                {**self.card(position), **entry}
                for position, entry in zip(items.positions.tolist(), entries, strict=True)
            ],
        }

    def explain(self, request: schemas.ExplainRequest) -> dict:
        self.catch_up()
        query = self._query(request)
        reference = request.item_id
        if self.catalog.has(reference):
            position = self.catalog.position(reference)
        else:
            position = self.catalog.match_title(reference, self.engine.popularity).position
        explanation = self.engine.explain(query, position, top_reasons=request.reasons)
        return {
            "explanation": to_data(explanation),
            "item": self.card(position),
        }

    # ----- sessions ----------------------------------------------------------------------
    def start_session(self, user_id: str | None) -> dict:
        session = self.conversation.start(user_id)
        return {
            "session_id": session.id,
            "token": session.token,
            "greeting": self.conversation.greeting(),
        }

    def _lock_for(self, session_id: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._session_locks.get(session_id)
            if lock is None:
                lock = threading.Lock()
                self._session_locks[session_id] = lock
            return lock

    def send(self, session_id: str, request: schemas.MessageRequest) -> dict:
        """One turn; turns of one session are serialized here (and by the store's turn
        check across processes)."""
        self.catch_up()
        lock = self._lock_for(session_id)
        with lock:
            session = self.conversation.resume(session_id)
            if request.reaction is not None:
                position = self.catalog.position(request.reaction.item_id)
                turn = session.react(position, request.reaction.liked)
            else:
                turn = session.send(request.text or "")
            return {
                "turn": session.state.turn,
                "reply": turn.reply,
                "items": [self._with_card(item) for item in turn.items],
                "question": turn.question,
                **({"trace": turn.trace} if turn.trace else {}),
            }

    def _with_card(self, item: dict) -> dict:
        """A turn's item with its card fields (kept as stored if the catalog lost it)."""
        if not self.catalog.has(item["item_id"]):
            return item
        return {**self.card(self.catalog.position(item["item_id"])), **item}

    def session_view(self, session_id: str) -> dict:
        state = self.store.load(session_id)
        messages = []
        for m in self.store.messages(session_id):
            payload = m["payload"] or {}
            view = {
                "turn": m["turn"],
                "role": m["role"],
                "text": m["text"],
                "created": m["created"],
            }
            if m["role"] == "assistant":
                view["items"] = [self._with_card(i) for i in payload.get("items", [])]
                view["question"] = payload.get("question")
            elif "reaction" in payload:
                view["reaction"] = payload["reaction"]
            messages.append(view)
        return {
            "session_id": session_id,
            "user_id": state.get("user_id"),
            "turn": state.get("turn", 0),
            "messages": messages,
        }

    # ----- feedback ---------------------------------------------------------------------
    def add_feedback(self, events: list[schemas.FeedbackIn], source: str | None) -> dict:
        unknown = [e.item_id for e in events if not self.catalog.has(e.item_id)]
        if unknown:
            raise NotFoundError(f"unknown item ids: {', '.join(unknown[:5])}")
        stored = [
            FeedbackEvent(
                item_id=e.item_id,
                kind=e.kind,
                user_id=e.user_id,
                session_id=e.session_id,
                rating=e.rating,
                timestamp=e.timestamp,
                source=source,
            )
            for e in events
        ]
        ids = self.store.add_feedback(stored)
        self.catch_up()  # folds these in, and whatever other processes stored meanwhile
        return {"accepted": len(ids), "ids": ids}

    def fold_in(self, events: list[FeedbackEvent]) -> int:
        """Fold feedback of known-by-id users into the engine (no retrain).

        Positive events (interactions, likes, ratings at or above the bundle's positive
        threshold, `Engine.positive_threshold`) add the item to the user's history, so
        the next `/v1/recommend` for that user reflects them (iALS re-solves the user's
        vector with item factors fixed). Dislikes and lower ratings mark the item as seen:
        never recommended to that user again, never cited as evidence. Session-only events
        change neither. All are kept in the store for the next full retrain. Called after
        the events are durable, and on start-up for everything already stored, so a
        restart loses no fold-in.
        """
        liked: dict[str, list[str]] = {}
        seen: dict[str, list[str]] = {}
        threshold = self.engine.positive_threshold
        for event in events:
            if event.user_id is None or not self.catalog.has(event.item_id):
                continue  # session-only, or stored under an older catalog: for retraining
            target = liked if is_positive(event.kind, event.rating, threshold) else seen
            target.setdefault(str(event.user_id), []).append(event.item_id)
        for user_id, item_ids in seen.items():
            self.engine.mark_seen(user_id, item_ids)
        for user_id, item_ids in liked.items():
            self.engine.fold_in(user_id, item_ids)
        return sum(len(items) for items in (*liked.values(), *seen.values()))

    def close(self) -> None:
        self.store.close()
