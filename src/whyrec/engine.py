"""Shared recommendation logic: top-k over any model, excluding seen items, filtered, explained.

The CLI, the API and the conversation all call `Engine.recommend`, so ranking and
filtering rules exist once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from whyrec.bundle import Bundle
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explainer import Explainer
from whyrec.explain.explanation import Explanation
from whyrec.filters import ItemFilter


@dataclass
class Recommendation:
    rank: int
    position: int
    item_id: str
    title: str
    score: float
    because: list[HistoryContribution] = field(default_factory=list)
    explanation: Explanation | None = None

    def to_dict(self, with_explanation: bool = False) -> dict:
        """JSON-ready fields; the full evidence under "explanation" only when asked."""
        data = {
            "rank": self.rank,
            "item_id": self.item_id,
            "title": self.title,
            "score": self.score,
            "because": [c.to_dict() for c in self.because],
        }
        if with_explanation and self.explanation is not None:
            from whyrec.explain.render import sentences

            data["explanation"] = {
                **self.explanation.to_dict(),
                "text": sentences(self.explanation),
            }
        return data


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of the k best finite scores, best first (ties: lower position first)."""
    scores = np.where(allowed, scores, -np.inf) if allowed is not None else scores
    finite = np.isfinite(scores)
    k = min(k, int(finite.sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k].astype(np.int64)


def unique_in_order(positions: Iterable[int]) -> np.ndarray:
    """Drop repeated positions, keeping the first occurrence (time order matters)."""
    seen: set[int] = set()
    kept = [p for p in map(int, positions) if not (p in seen or seen.add(p))]
    return np.array(kept, dtype=np.int64)


class Engine:
    """Recommend from a loaded bundle."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.catalog = bundle.catalog

    @cached_property
    def popularity(self) -> np.ndarray:
        return self.bundle.train.item_popularity()

    @cached_property
    def explainer(self) -> Explainer:
        """Built on first use: the attribute graph and a by-item copy of the training matrix."""
        return Explainer(self.model, self.bundle.train)

    def user_row(self, user_id: str | None) -> int | None:
        """The training row of a known user (left out of co-interaction counts), else None."""
        if user_id is None:
            return None
        return self.bundle.train.user_index.get(str(user_id))

    def user_history(self, user_id: str) -> np.ndarray:
        """A known user's training items, time-ordered."""
        if str(user_id) not in self.bundle.train.user_index:
            raise NotFoundError(
                f"unknown user {user_id!r}; this bundle knows {self.bundle.train.n_users} users "
                f"(e.g. {', '.join(map(str, self.bundle.train.user_ids[:3]))}); "
                "or pass --history with titles"
            )
        return unique_in_order(self.bundle.train.history(str(user_id)))

    def resolve_items(self, references: Iterable[str]) -> np.ndarray:
        """Item ids or free-text titles → catalog positions (fuzzy, typo-tolerant)."""
        positions = [self.catalog.match_title(ref, self.popularity).position for ref in references]
        if not positions:
            raise WhyrecError("the history is empty")
        return unique_in_order(positions)

    def recommend(
        self,
        history: np.ndarray,
        k: int = 10,
        item_filter: ItemFilter | None = None,
        exclude: Iterable[int] = (),
        explain: bool = True,
        top_reasons: int = 3,
        user_id: str | None = None,
    ) -> list[Recommendation]:
        """Top-k items for one history; seen and excluded items are never recommended.

        With `explain`, each item carries an `Explanation` and `because` lists its cited
        history items (the same evidence). `user_id`, when given, is left out of the
        co-interaction counts.
        """
        if k < 1:
            raise WhyrecError("k must be at least 1")
        history = unique_in_order(history)
        exclude = np.fromiter(exclude, dtype=np.int64)
        scores = self.model.score([history])[0]
        allowed = item_filter.mask(self.catalog) if item_filter else np.ones(len(scores), bool)
        allowed[history] = False
        allowed[exclude] = False
        best = top_k(scores, k, allowed)
        explanations = (
            self.explainer.explain(
                history,
                best,
                k=k,
                scores=scores,
                item_filter=item_filter,
                exclude=exclude,
                user_row=self.user_row(user_id),
                top_reasons=top_reasons,
            )
            if explain
            else None
        )
        return [
            Recommendation(
                rank=rank,
                position=int(pos),
                item_id=self.catalog.item_ids[pos],
                title=self.catalog.titles[pos],
                score=float(scores[pos]),
                because=list(explanations[rank - 1].history) if explanations else [],
                explanation=explanations[rank - 1] if explanations else None,
            )
            for rank, pos in enumerate(best, start=1)
        ]

    def explain(
        self,
        history: np.ndarray,
        item_position: int,
        k: int = 10,
        item_filter: ItemFilter | None = None,
        exclude: Iterable[int] = (),
        user_id: str | None = None,
        top_reasons: int = 3,
    ) -> Explanation:
        """Why (or why not) one item, ranked as `recommend` with the same arguments would.

        An item already in the history is a user mistake: it is never recommended, so
        there is nothing to explain.
        """
        if k < 1:
            raise WhyrecError("k must be at least 1")
        history = unique_in_order(history)
        position = int(item_position)
        if not 0 <= position < len(self.catalog):
            raise NotFoundError(f"no item at catalog position {position}")
        if position in set(history.tolist()):
            raise WhyrecError(
                f"{self.catalog.titles[position]!r} is already in the history; "
                "only items not yet seen are recommended"
            )
        (explanation,) = self.explainer.explain(
            history,
            [position],
            k=k,
            item_filter=item_filter,
            exclude=np.fromiter(exclude, dtype=np.int64),
            user_row=self.user_row(user_id),
            top_reasons=top_reasons,
        )
        return explanation
