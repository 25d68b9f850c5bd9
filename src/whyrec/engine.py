"""Shared recommendation logic: top-k over any model, excluding seen items, filtered, explained.

The CLI, the API and the conversation all call `Engine.recommend`, so ranking and
filtering rules exist once.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from whyrec.bundle import Bundle
from whyrec.errors import AlreadySeenError, NotFoundError, WhyrecError
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explainer import CONFIDENCE_HEAD, CONFIDENCE_WINDOW, Explainer
from whyrec.explain.explanation import Explanation
from whyrec.feedback import FeedbackLog, FoldIn, positive_threshold, user_vector
from whyrec.filters import ItemFilter
from whyrec.retrieval import ANNIndex, ann_min_items

MAX_INEXACT_TITLES = 20
"""Loose (typo-tolerant) title matches one history may ask for; ids and exact titles are
unlimited (each is a dictionary look-up)."""


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
    """Drop repeated positions, keeping the first occurrence (time order matters).

    A stable sort finds each position's first occurrence: a Python set over a long
    history cost a few hundred microseconds on every request.
    """
    if not isinstance(positions, np.ndarray):
        positions = list(positions)
    positions = np.asarray(positions, dtype=np.int64).ravel()
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return positions[np.sort(order[first])]


class Engine:
    """Recommend from a loaded bundle."""

    def __init__(self, bundle: Bundle, ann_threshold: int | None = None) -> None:
        """`ann_threshold`: catalogue size from which top-k is approximate (faiss) for
        models that score by a dot product; default WHYREC_ANN_MIN_ITEMS or 100,000."""
        self.bundle = bundle
        self.model = bundle.model
        self.catalog = bundle.catalog
        self.ann_threshold = ann_min_items() if ann_threshold is None else ann_threshold
        self.feedback = FeedbackLog()

    # ----- approximate retrieval --------------------------------------------------------
    @cached_property
    def retriever(self) -> ANNIndex | None:
        """The ANN index when the catalogue is large enough and the model allows it.

        Built on first use (calibrated on a sample of training users) and cached in the
        bundle folder, keyed by the model files, so later processes load it.
        """
        if len(self.catalog) < self.ann_threshold:
            return None
        space = self.model.embedding_space()
        if space is None or len(space.positions) < 2:
            return None
        cache = self.bundle.path / "ann" if self.bundle.path is not None else None
        fingerprint = self._model_fingerprint()
        if cache is not None:
            loaded = ANNIndex.load(cache, space, fingerprint)
            if loaded is not None:
                return loaded
        index = ANNIndex.build(space, self._sample_queries())
        if cache is not None:
            with contextlib.suppress(OSError):  # a read-only bundle just rebuilds next time
                index.save(cache, fingerprint)
        return index

    def _model_fingerprint(self) -> str:
        if self.bundle.path is None:
            return "in-memory"
        model_dir = self.bundle.path / "model"
        stamps = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model_dir.iterdir()
        )
        return hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]

    def _sample_queries(self, count: int = 200) -> np.ndarray:
        """Query vectors of random training users: what the index will be asked."""
        train = self.bundle.train
        rng = np.random.default_rng(0)
        rows = rng.choice(train.n_users, min(count, train.n_users), replace=False)
        matrix = train.matrix[np.sort(rows)]
        histories = [
            matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]] for r in range(len(rows))
        ]
        histories = [h for h in histories if len(h)]
        return self.model.query_vectors(histories) if histories else np.zeros((0, 1))

    def _score_row(self, history: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """The model's scores for one history: exact, or from the ANN index above the
        threshold (exact for the retrieved candidates, -inf elsewhere). Falls back to exact
        scoring when filters leave fewer than k allowed candidates."""
        retriever = self.retriever if len(history) else None
        if retriever is not None:
            query = self.model.query_vectors([history])
            want = max(k + CONFIDENCE_WINDOW, CONFIDENCE_HEAD) + len(history)
            for _ in range(4):  # widen the search while filters reject too many candidates
                positions, scores = retriever.search(query, want)
                hit = positions[0] >= 0
                row = np.full(len(self.catalog), -np.inf, dtype=np.float32)
                row[positions[0][hit]] = scores[0][hit]
                if int((np.isfinite(row) & allowed).sum()) >= k:
                    return row
                if want >= len(retriever.space.positions):
                    break  # the probed clusters hold too few allowed items: go exact
                want *= 8
        return self.model.score([history])[0]

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

    def fold_in(
        self, user_id: str, item_ids: Iterable[str], timestamp: int | None = None
    ) -> FoldIn:
        """Add new feedback (item ids the user interacted with) to a user's history.

        Known and new users alike; the next `recommend` for this user reflects it at once.
        The returned `FoldIn` carries the user's updated vector for models that have one
        (iALS: the least-squares user step with the item factors fixed), see
        `whyrec.feedback`. Unknown item ids raise before anything is recorded.
        """
        user_id = str(user_id)
        positions = np.array([self.catalog.position(i) for i in item_ids], dtype=np.int64)
        if len(positions) == 0:
            raise WhyrecError("feedback needs at least one item")
        self.feedback.add(user_id, positions, timestamp)
        history = self.user_history(user_id)
        vector, method = user_vector(self.model, history)
        return FoldIn(user_id, positions, history, vector, method)

    @cached_property
    def positive_threshold(self) -> float | None:
        """Ratings at or above this are likes (see `whyrec.feedback.positive_threshold`)."""
        ratings = self.bundle.train.interactions["rating"].to_numpy(dtype=np.float64)
        return positive_threshold(self.bundle.info.get("min_rating"), ratings)

    def mark_seen(self, user_id: str, item_ids: Iterable[str]) -> None:
        """Feedback that the user met items without liking them (a dislike, a low
        rating): never recommended to them again, never cited as their taste."""
        positions = np.array([self.catalog.position(i) for i in item_ids], dtype=np.int64)
        self.feedback.add_seen(str(user_id), positions)

    def user_history(self, user_id: str) -> np.ndarray:
        """A user's training items, then feedback folded in since, time-ordered."""
        user_id = str(user_id)
        added = self.feedback.of(user_id)
        if user_id not in self.bundle.train.user_index:
            if len(added):
                return unique_in_order(added)
            # no example ids: the message reaches API callers, who must not learn users
            raise NotFoundError(
                f"unknown user {user_id!r}: not among this bundle's users; "
                "give a history of titles or item ids instead"
            )
        trained = self.bundle.train.history(user_id)
        return unique_in_order(np.concatenate([trained, added]) if len(added) else trained)

    def resolve_items(self, references: Iterable[str]) -> np.ndarray:
        """Item ids or free-text titles → catalog positions (fuzzy, typo-tolerant).

        Ids and exact titles are dictionary look-ups; a fuzzy match compares against the
        whole catalog, so at most `MAX_INEXACT_TITLES` distinct loose titles are matched per
        history (hundreds of near-miss titles would otherwise hold a worker for seconds).
        A loose title beyond that bound, like one that matches nothing, is not found.
        """
        references = list(references)
        positions = [self.catalog.exact_position(ref, self.popularity) for ref in references]
        loose: dict[str, int] = {}
        for n, position in enumerate(positions):
            if position is not None:
                continue
            reference = references[n].strip()
            if reference not in loose:
                if len(loose) == MAX_INEXACT_TITLES:
                    raise NotFoundError(
                        f"{reference!r} is not an item id or exact title, and a history may "
                        f"hold at most {MAX_INEXACT_TITLES} loose titles: give ids or exact titles"
                    )
                loose[reference] = self.catalog.match_title(reference, self.popularity).position
            positions[n] = loose[reference]
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
        exclude = np.concatenate(
            [np.fromiter(exclude, dtype=np.int64), self.feedback.seen_of(user_id)]
        )
        allowed = (
            item_filter.mask(self.catalog) if item_filter else np.ones(len(self.catalog), bool)
        )
        allowed[history] = False
        allowed[exclude] = False
        scores = self._score_row(history, k, allowed)
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
            raise AlreadySeenError(
                f"{self.catalog.titles[position]!r} is already in the history; "
                "only items not yet seen are recommended"
            )
        (explanation,) = self.explainer.explain(
            history,
            [position],
            k=k,
            item_filter=item_filter,
            exclude=np.concatenate(
                [np.fromiter(exclude, dtype=np.int64), self.feedback.seen_of(user_id)]
            ),
            user_row=self.user_row(user_id),
            top_reasons=top_reasons,
        )
        return explanation
