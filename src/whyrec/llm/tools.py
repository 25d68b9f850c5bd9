"""The recommender's tools for the LLM (InteRecAgent): search, rank, explain, compare.

Candidate lists never travel through the prompt: each list-producing tool writes its
result to the turn's `CandidateMemory` under a handle ("c1", "c2", ...; "policy" holds
the embedded policy's list) and returns only the handle, the count and a few titles.
Later tools read a list with `within`. Filters are structured (attribute values, years),
never free query text for the catalog, and every argument is validated: a bad call
yields an error observation that the reflection step can show the LLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from whyrec.conversation.state import DialogueState
from whyrec.core import ItemList
from whyrec.filters import ItemFilter
from whyrec.ranking import top_k

PREVIEW_ITEMS = 5
MAX_COMPARE = 4


class SearchCatalog(BaseModel):
    """Items having attribute values (any listed value of a field; all fields together)."""

    model_config = ConfigDict(extra="forbid")
    include: dict[str, list[str]] = Field(default_factory=dict)
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    year_min: int | None = None
    year_max: int | None = None
    within: str | None = Field(default=None, description="Handle of a list to search in")
    limit: int = Field(default=200, ge=1, le=5000)


class SemanticSearch(BaseModel):
    """Items whose text is closest in meaning to a description."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=2, max_length=300)
    within: str | None = None
    limit: int = Field(default=50, ge=1, le=500)


class RankForUser(BaseModel):
    """A list re-ranked for this user by the collaborative model and the dialogue so far."""

    model_config = ConfigDict(extra="forbid")
    within: str
    limit: int = Field(default=10, ge=1, le=100)


class ExplainItem(BaseModel):
    """The evidence for one item: history items, shared attributes, other users."""

    model_config = ConfigDict(extra="forbid")
    item_id: str


class CompareItems(BaseModel):
    """Attributes and personal ranks of 2-4 items side by side."""

    model_config = ConfigDict(extra="forbid")
    item_ids: list[str] = Field(min_length=2, max_length=MAX_COMPARE)


TOOLS: dict[str, type[BaseModel]] = {
    "search_catalog": SearchCatalog,
    "semantic_search": SemanticSearch,
    "rank_for_user": RankForUser,
    "explain_item": ExplainItem,
    "compare_items": CompareItems,
}
LIST_TOOLS = ("search_catalog", "semantic_search", "rank_for_user")


def tool_specs() -> list[dict]:
    """The tools in the OpenAI `tools` format (function name, description, JSON schema)."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": (model.__doc__ or name).strip(),
                "parameters": model.model_json_schema(),
            },
        }
        for name, model in TOOLS.items()
    ]


@dataclass
class CandidateMemory:
    """Lists of catalog positions by handle, plus facts (explanations, comparisons)."""

    lists: dict[str, list[int]] = field(default_factory=dict)
    facts: list[dict] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    """Handles written by tools, in call order."""

    def new_handle(self) -> str:
        return f"c{len(self.order) + 1}"

    def summary(self) -> dict:
        return {handle: len(items) for handle, items in self.lists.items()}


class ToolError(ValueError):
    """A tool call the executor refused (bad arguments, unknown handle or id)."""


class Toolbox:
    """Executes tool calls for one session's turn against the conversation's machinery."""

    def __init__(self, session, state: DialogueState, memory: CandidateMemory) -> None:
        self.session = session
        self.conversation = session.conversation
        self.catalog = self.conversation.catalog
        self.state = state
        self.memory = memory
        self._blocked = np.zeros(len(self.catalog), dtype=bool)
        for group in (state.history, state.liked, state.disliked, state.rejected):
            if group:
                self._blocked[np.asarray(group, dtype=np.int64)] = True

    def run(self, name: str, arguments: str) -> dict:
        """Execute one call; the observation is JSON-ready and never raises."""
        model = TOOLS.get(name)
        if model is None:
            return {"error": f"unknown tool {name!r}; tools: {', '.join(TOOLS)}"}
        try:
            args = model.model_validate(json.loads(arguments or "{}"))
            return getattr(self, name)(args)
        except (ValidationError, ValueError) as exc:
            message = str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)
            if isinstance(exc, ValidationError):
                message = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:4]
                )
            return {"error": f"{name}: {message}"}

    # ----- helpers --------------------------------------------------------------------------
    def _within(self, handle: str | None) -> np.ndarray:
        mask = ~self._blocked
        if handle is None:
            return mask
        if handle not in self.memory.lists:
            raise ToolError(f"no list {handle!r}; lists: {', '.join(self.memory.lists) or 'none'}")
        inside = np.zeros(len(self.catalog), dtype=bool)
        inside[np.asarray(self.memory.lists[handle], dtype=np.int64)] = True
        return mask & inside

    def _store(self, positions: list[int]) -> dict:
        handle = self.memory.new_handle()
        self.memory.order.append(handle)
        self.memory.lists[handle] = [int(p) for p in positions]
        return {"handle": handle, "count": len(positions), "top": self.preview(positions)}

    def preview(self, positions: list[int]) -> list[dict]:
        """The head of a list in the core item shape, brief (id and title)."""
        return ItemList(self.catalog, positions[:PREVIEW_ITEMS]).to_dicts(brief=True)

    def _field(self, name: str) -> str:
        for known in self.catalog.fields:
            if known.lower() == name.strip().lower():
                return known
        raise ToolError(f"unknown field {name!r}; fields: {', '.join(self.catalog.fields)}")

    def _position(self, item_id: str) -> int:
        if not self.catalog.has(item_id):
            raise ToolError(f"no item with id {item_id!r}")
        return self.catalog.position(item_id)

    # ----- tools ----------------------------------------------------------------------------
    def search_catalog(self, args: SearchCatalog) -> dict:
        item_filter = ItemFilter(year_min=args.year_min, year_max=args.year_max)
        unknown = []
        for group, wanted in (
            (args.include, item_filter.include),
            (args.exclude, item_filter.exclude),
        ):
            for name, values in group.items():
                field_name = self._field(name)
                known = {v.lower() for v in self.catalog.value_counts(field_name)}
                unknown += [f"{field_name}={v}" for v in values if v.lower() not in known]
                wanted.setdefault(field_name, set()).update(values)
        mask = self._within(args.within) & item_filter.mask(self.catalog)
        ordered = top_k(self.conversation.engine.popularity, args.limit, mask)
        observation = self._store([int(p) for p in ordered])
        if unknown:
            observation["unknown_values"] = unknown[:10]
        return observation

    def semantic_search(self, args: SemanticSearch) -> dict:
        wishes = self.conversation.scorer.wish_scorer
        if wishes is None or not hasattr(wishes, "item_vectors"):
            raise ToolError("semantic search is unavailable (no sentence encoder)")
        query = wishes._encode([args.query])[0]
        similarity = wishes.item_vectors @ query
        ordered = top_k(similarity, args.limit, self._within(args.within))
        return self._store([int(p) for p in ordered])

    def rank_for_user(self, args: RankForUser) -> dict:
        scores, _ = self.conversation.scorer.scores(self.state)
        ordered = top_k(scores, args.limit, self._within(args.within))
        return self._store([int(p) for p in ordered])

    def explain_item(self, args: ExplainItem) -> dict:
        position = self._position(args.item_id)
        if position in self.state.profile():
            fact = {
                "kind": "explanation",
                "item_id": args.item_id,
                "title": self.catalog.titles[position],
                "evidence": "one of the films the user likes",
            }
        else:
            (item,) = self.session.describe_items(self.state, [position])
            fact = {
                "kind": "explanation",
                "item_id": args.item_id,
                "title": item["title"],
                "evidence": item["explanation"]["text"],
                "cited": [c["item_id"] for c in item["explanation"].get("history", [])],
            }
        self.memory.facts.append(fact)
        return fact

    def compare_items(self, args: CompareItems) -> dict:
        positions = [self._position(i) for i in dict.fromkeys(args.item_ids)]
        if len(positions) < 2:
            raise ToolError("compare needs two different items")
        scores, _ = self.conversation.scorer.scores(self.state)
        order = top_k(scores, max(2000, len(scores) // 4))
        rank_of = {int(p): r + 1 for r, p in enumerate(order)}
        values = {
            p: {
                (f, v)
                for f in self.catalog.fields
                if f != "decade"
                for v in self.catalog.values(f, p)
            }
            for p in positions
        }
        shared = set.intersection(*values.values())
        items: list[dict[str, Any]] = []
        for p in positions:
            items.append(
                {
                    "item_id": self.catalog.item_ids[p],
                    "title": self.catalog.titles[p],
                    "year": self.catalog.year(p),
                    "personal_rank": rank_of.get(p),
                    "only_this": sorted(f"{f}={v}" for f, v in values[p] - shared)[:8],
                }
            )
        fact = {
            "kind": "comparison",
            "items": items,
            "shared": sorted(f"{f}={v}" for f, v in shared)[:10],
        }
        self.memory.facts.append(fact)
        return fact
