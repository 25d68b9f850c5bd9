"""The two shapes every shell speaks: a `Query` goes into the engine, an `ItemList` comes out.

The CLI, the API, the conversation and the LLM tools build a `Query` (who, their
history, hard constraints, exclusions, how many), hand it to `Engine.run`, and
serialize the `ItemList` they get back with `to_dicts`; none of them ranks or filters
on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from whyrec.data.catalog import Catalog
from whyrec.errors import WhyrecError
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explanation import Explanation
from whyrec.filters import ItemFilter


@dataclass(frozen=True, eq=False)
class Query:
    """One recommendation request.

    `user_id` names a known (or folded-in) user; `history` gives the person's items as
    catalog positions (when None, the engine reads the user's history); `item_filter`
    holds the hard constraints; `exclude` lists positions never to return (besides the
    history, which is always left out); `k` is how many items to return; `text`, when
    given, describes in words what is wanted ("a heist film with a twist"): the items
    are then ranked by how well they fit it (`Engine.description_parts`), with the
    history's model score added when there is a history too.
    """

    user_id: str | None = None
    history: np.ndarray | None = None
    item_filter: ItemFilter | None = None
    exclude: np.ndarray | Sequence[int] = ()
    k: int = 10
    text: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise WhyrecError("k must be at least 1")
        if self.text is not None:
            if not self.text.strip():
                raise WhyrecError("the query text is empty; describe what you want in words")
            object.__setattr__(self, "text", self.text.strip())
        if self.user_id is None and self.history is None:
            raise WhyrecError("a query needs a user id or a history")
        if self.history is not None:
            object.__setattr__(self, "history", np.asarray(self.history, dtype=np.int64))
        object.__setattr__(self, "exclude", np.asarray(self.exclude, dtype=np.int64).ravel())


@dataclass
class Recommendation:
    """One entry of an `ItemList`: an item at a rank, its score and its evidence."""

    rank: int
    position: int
    item_id: str
    title: str
    score: float | None
    because: list[HistoryContribution] = field(default_factory=list)
    explanation: Explanation | None = None

    def to_dict(self, with_explanation: bool = False, brief: bool = False) -> dict:
        """JSON-ready fields; the full evidence under "explanation" only when asked.

        `brief` keeps only the id and the title (what a list preview shows, e.g. an LLM
        tool's observation, where every token counts)."""
        if brief:
            return {"item_id": self.item_id, "title": self.title}
        data = {
            "rank": self.rank,
            "item_id": self.item_id,
            "title": self.title,
            "score": self.score,
            "because": [c.to_dict() for c in self.because],
        }
        if with_explanation and self.explanation is not None:
            from whyrec.explain.render import to_data

            data["explanation"] = to_data(self.explanation)
        return data


@dataclass
class ItemList:
    """Ranked items bound to their catalog: positions, ids, scores, ranks, explanations.

    Iterating (or indexing) gives `Recommendation` entries; `to_dicts` is what every
    shell prints or sends.
    """

    catalog: Catalog
    positions: np.ndarray
    scores: np.ndarray | None = None
    """None for a list whose order is all that is known (e.g. the items already shown)."""
    explanations: Sequence[Explanation] | None = None

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.int64)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64)
            if len(self.scores) != len(self.positions):
                raise WhyrecError("an item list needs one score per item")
        if self.explanations is not None and len(self.explanations) != len(self.positions):
            raise WhyrecError("an item list needs one explanation per item")

    @property
    def ranks(self) -> np.ndarray:
        """1-based ranks (the list is best first)."""
        return np.arange(1, len(self.positions) + 1)

    @property
    def ids(self) -> list[str]:
        return [self.catalog.item_ids[p] for p in self.positions]

    @property
    def titles(self) -> list[str]:
        return [self.catalog.titles[p] for p in self.positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __bool__(self) -> bool:
        return len(self.positions) > 0

    @overload
    def __getitem__(self, index: int) -> Recommendation: ...

    @overload
    def __getitem__(self, index: slice) -> list[Recommendation]: ...

    def __getitem__(self, index: int | slice) -> Recommendation | list[Recommendation]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]  # negative indexes and bounds, as a list's
        position = int(self.positions[index])
        explanation = self.explanations[index] if self.explanations is not None else None
        return Recommendation(
            rank=index + 1,
            position=position,
            item_id=self.catalog.item_ids[position],
            title=self.catalog.titles[position],
            score=float(self.scores[index]) if self.scores is not None else None,
            because=list(explanation.history) if explanation is not None else [],
            explanation=explanation,
        )

    def __iter__(self) -> Iterator[Recommendation]:
        return (self[i] for i in range(len(self)))

    def head(self, n: int) -> ItemList:
        """The first `n` entries as an item list."""
        explanations = self.explanations[:n] if self.explanations is not None else None
        scores = self.scores[:n] if self.scores is not None else None
        return ItemList(self.catalog, self.positions[:n], scores, explanations)

    def to_dicts(self, with_explanation: bool = False, brief: bool = False) -> list[dict]:
        """Each entry as JSON-ready data (see `Recommendation.to_dict`)."""
        return [entry.to_dict(with_explanation, brief) for entry in self]
