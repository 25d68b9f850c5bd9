"""The LLM as a recommender, evaluated like every other model (Di Palma et al.).

`LLMRecommender` ("llm") asks the LLM zero-shot for titles given the titles of a user's
training items (most recent first, capped) and maps each answer to the catalog with the
catalog's title matcher. `LLMReranker` ("llm-rerank", Chat-Rec / InteRecAgent) gives it
a collaborative model's top candidates and asks for them best first. Both are ordinary
`Recommender`s (not in the model registry: they ask a server when scoring, so they
are evaluated, never trained into a bundle): `score` returns one row per history with
the LLM's ranks as scores and -inf elsewhere, so the evaluation protocol, its metrics
and its intervals are shared.

What the LLM did is counted as it happens (`llm_stats`): answers that parsed, titles
that match no catalog item (hallucinated), titles the user already has (repeated),
calls, tokens and seconds. A failed answer leaves the user's row empty (llm) or keeps
the collaborative order (llm-rerank); nothing is invented in between.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Annotated, Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from whyrec.conversation.understanding import SURE_TITLE_SCORE
from whyrec.data.dataset import Dataset
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.llm.client import CHARS_PER_TOKEN, CallContext, LLMClient, TokenBudget
from whyrec.llm.config import LLMConfig
from whyrec.llm.structured import ask_structured
from whyrec.models.base import Histories, ModelConfig, Recommender

RECOMMEND_SYSTEM = """task: recommend_titles
You are a film recommender. The user watched the films listed (most recent first).
Suggest {k} other films from the catalog that this user would like, best first, as
JSON: {{"titles": ["Title (Year)", ...]}}. Only real film titles; none the user watched."""

RERANK_SYSTEM = """task: rerank
You are a film recommender. The user watched the films listed (most recent first).
Pick the {k} numbered candidates this user would like most, best first, as JSON:
{{"order": [numbers]}}. Use only the numbers given."""


TITLE_CHARS = 60
"""Longest title answer accepted (the catalog's titles are shorter): bounds a weak model
that would go on writing inside one string."""


@lru_cache
def answer_model(kind: str, k: int, candidates: int = 0) -> type[BaseModel]:
    """The answer's schema: `k` entries, each a title of bounded length or one of the
    `candidates` numbers. Grammar-constrained servers then cannot answer with an empty
    list, nor go on listing (or write a number of many digits) past the answer's token
    cap. Validation stays lenient where a server without a grammar strays: extra entries
    are cut off, and a number outside the candidates is counted, not fatal."""
    if kind == "titles":
        entry: Any = Annotated[str, Field(max_length=TITLE_CHARS)]
    else:
        entry = Annotated[int, Field(json_schema_extra={"enum": list(range(1, candidates + 1))})]
    return create_model(
        "TitleList" if kind == "titles" else "CandidateOrder",
        __config__=ConfigDict(extra="forbid"),
        **{kind: (list[entry], Field(min_length=k, json_schema_extra={"maxItems": k}))},
    )


def _empty_stats() -> dict:
    return {
        "users": 0,
        "answered": 0,
        "titles": 0,
        "unmatched": 0,
        "seen": 0,
        "calls": 0,
        "tokens": 0,
        "seconds": 0.0,
    }


class _LLMModel(Recommender):
    """What both LLM models share: a client, the catalog, the counting."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.llm_config: LLMConfig | None = None
        self._client: LLMClient | None = None
        self.stats = _empty_stats()

    def use_llm(self, config: LLMConfig, client: LLMClient | None = None) -> Self:
        """The server to ask (the CLI passes the --llm-* options here)."""
        self.llm_config = config
        self._client = client
        return self

    @property
    def client(self) -> LLMClient:
        if self.llm_config is None:
            raise WhyrecError(
                f"model {self.name} needs an LLM: give --llm-base-url/--llm-model or set "
                "WHYREC_LLM_BASE_URL and WHYREC_LLM_MODEL"
            )
        if self._client is None:
            self._client = LLMClient(self.llm_config)
        return self._client

    def fit(self, dataset: Dataset) -> Self:
        self.catalog = dataset.catalog
        self.popularity = dataset.item_popularity()
        self.n_items_ = len(dataset.catalog)
        self.stats = _empty_stats()
        return self

    def _history_titles(self, history: np.ndarray) -> list[str]:
        recent = np.asarray(history, dtype=np.int64)[::-1][: self.config.history]
        return [self.catalog.titles[p] for p in recent]

    def _ask(self, purpose: str, answer: type[BaseModel], messages: list[dict], tokens: int):
        """The validated answer or None; `tokens` is the longest answer that makes sense."""
        config = self.client.config
        ctx = CallContext.for_turn(config, TokenBudget(config.token_budget))
        started = time.monotonic()
        result, _ = ask_structured(
            self.client, ctx, purpose, answer, messages, max_tokens=max(tokens, 16)
        )
        self.stats["users"] += 1
        self.stats["calls"] += sum(1 for c in ctx.calls if c["outcome"] not in ("skipped",))
        self.stats["tokens"] += ctx.tokens
        self.stats["seconds"] += time.monotonic() - started
        self.stats["answered"] += result is not None
        return result

    def llm_stats(self) -> dict:
        """{parsed, hallucinated, repeated, calls, tokens, seconds}: fractions in [0, 1]."""
        s = self.stats
        return {
            "parsed": s["answered"] / s["users"] if s["users"] else 0.0,
            "hallucinated": s["unmatched"] / s["titles"] if s["titles"] else 0.0,
            "repeated": s["seen"] / s["titles"] if s["titles"] else 0.0,
            "calls": s["calls"],
            "tokens": s["tokens"],
            "seconds": round(s["seconds"], 3),
            "users": s["users"],
            "titles": s["titles"],
        }

    def run_stats(self) -> dict | None:
        return {"llm": self.llm_stats()}

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise WhyrecError(f"{self.name} asks an LLM at scoring time; it is not saved in bundles")

    def _rows(self, histories: Histories) -> list[np.ndarray]:
        if hasattr(histories, "indptr"):
            return [
                histories.indices[a:b]
                for a, b in zip(histories.indptr[:-1], histories.indptr[1:], strict=True)
            ]
        return list(histories)


class LLMRecommenderConfig(ModelConfig):
    titles: int = Field(default=10, ge=1, le=100)
    """Titles asked for per user."""
    history: int = Field(default=10, ge=1, le=200)
    """Most recent training items shown to the LLM."""


class LLMRecommender(_LLMModel):
    """Zero-shot: the LLM names films for the user, matched to the catalog by title."""

    name = "llm"
    Config = LLMRecommenderConfig

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        rows = self._rows(histories)
        scores = np.full((len(rows), self.n_items_), -np.inf, dtype=np.float32)
        for row, history in enumerate(rows):
            for rank, position in enumerate(self._recommend(history)):
                scores[row, position] = float(len(scores[row]) - rank)
        return scores if items is None else scores[:, items]

    def _recommend(self, history: np.ndarray) -> list[int]:
        k = self.config.titles
        messages = [
            {"role": "system", "content": RECOMMEND_SYSTEM.format(k=k)},
            {"role": "user", "content": json.dumps({"watched": self._history_titles(history)})},
        ]
        answer = self._ask(
            "recommend_titles",
            answer_model("titles", k),
            messages,
            tokens=k * (TITLE_CHARS // CHARS_PER_TOKEN + 4) + 16,
        )
        if answer is None:
            return []
        seen = {int(p) for p in history}
        ranked: list[int] = []
        for title in answer.titles[:k]:
            self.stats["titles"] += 1
            position = self._match(title)
            if position is None:
                self.stats["unmatched"] += 1
            elif position in seen:
                self.stats["seen"] += 1
            elif position not in ranked:
                ranked.append(position)
        return ranked

    def _match(self, title: str) -> int | None:
        """The catalog item a written title names, or None (a number is not a title)."""
        if not title.strip() or title.strip().isdigit():
            return None
        try:
            found = self.catalog.match_title(title, self.popularity)
        except NotFoundError:
            return None
        return found.position if found.exact or found.score >= SURE_TITLE_SCORE else None


class LLMRerankConfig(ModelConfig):
    base: str = "ease"
    """The collaborative model whose candidates are reranked."""
    candidates: int = Field(default=20, ge=2, le=200)
    """Candidates shown, numbered (20 titles are about 250 tokens: a small local model
    reads them in seconds; 50 took longer than a turn's budget on a CPU)."""
    picks: int = Field(default=10, ge=1, le=100)
    """How many of them the LLM puts first, in order; the rest keep the collaborative
    order after them (the answer stays short: its numbers, not all candidates)."""
    history: int = Field(default=10, ge=1, le=200)
    seed: int = 0


class LLMReranker(_LLMModel):
    """The collaborative model's top candidates, put in order by the LLM; candidates it
    leaves out keep the collaborative order after the ones it ranked."""

    name = "llm-rerank"
    Config = LLMRerankConfig

    def fit(self, dataset: Dataset) -> Self:
        from whyrec.models import model_class

        super().fit(dataset)
        base_class = model_class(self.config.base)
        params = {"seed": self.config.seed} if "seed" in base_class.Config.model_fields else {}
        self.base_model = base_class(**params).fit(dataset)
        return self

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        rows = self._rows(histories)
        base = np.asarray(self.base_model.score(rows), dtype=np.float32)
        scores = np.full(base.shape, -np.inf, dtype=np.float32)
        for row, history in enumerate(rows):
            base[row, np.asarray(history, dtype=np.int64)] = -np.inf
            top = np.argsort(-base[row], kind="stable")[: self.config.candidates]
            top = top[np.isfinite(base[row, top])]
            for rank, position in enumerate(self._rerank(history, top.tolist())):
                scores[row, position] = float(len(top) - rank)
        return scores if items is None else scores[:, items]

    def _rerank(self, history: np.ndarray, candidates: list[int]) -> list[int]:
        picks = min(self.config.picks, len(candidates))
        facts = {
            "watched": self._history_titles(history),
            "candidates": [f"{n + 1}. {self.catalog.titles[p]}" for n, p in enumerate(candidates)],
        }
        messages = [
            {"role": "system", "content": RERANK_SYSTEM.format(k=picks)},
            {"role": "user", "content": json.dumps(facts, ensure_ascii=False)},
        ]
        answer = self._ask(
            "rerank",
            answer_model("order", picks, len(candidates)),
            messages,
            tokens=4 * picks + 16,
        )
        if answer is None:
            return candidates
        ranked: list[int] = []
        for number in answer.order[:picks]:
            self.stats["titles"] += 1
            if not 1 <= number <= len(candidates):
                self.stats["unmatched"] += 1
            elif candidates[number - 1] not in ranked:
                ranked.append(candidates[number - 1])
        return ranked + [p for p in candidates if p not in ranked]
