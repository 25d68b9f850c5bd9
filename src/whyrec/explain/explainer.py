"""Build `Explanation`s: history attribution, attribute paths, constraints, co-interaction
counts, confidence, and "why not" for items outside the list.

One `Explainer` serves many requests: it keeps the attribute graph and a column-major
copy of the training matrix, so each explanation costs a few sparse look-ups plus one
attribution call (exact, or one batched occlusion pass) for the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.explain.attribution import Attribution, attribute, shares_of
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explanation import (
    HIGH,
    LOW,
    MEDIUM,
    CollaborativeEvidence,
    Confidence,
    ConstraintCheck,
    Explanation,
    MissingValue,
    PathEvidence,
    SharedValue,
    WhyNot,
)
from whyrec.filters import ItemFilter
from whyrec.graph.attributes import AttributeGraph
from whyrec.models.base import Recommender

CONFIDENCE_WINDOW = 5
"""The reference for confidence is the mean score of this many items right after the top-k."""

CONFIDENCE_HEAD = 50
"""The scale for confidence is the standard deviation of the scores of this many best items."""

HIGH_MARGIN = 1.3
"""margin ≥ this (in head standard deviations above the items just outside the list): high.
Calibrated on ml-latest-small with EASE, top-10 of every 10th user: the 33rd and 67th
percentiles of the margin are 0.62 and 1.34, so about a third of items get each label."""

MEDIUM_MARGIN = 0.6
"""margin ≥ this: medium; below: low (a small score change would drop the item from the
list). Items outside the top-k are always low, whatever their margin."""

MISSING_MIN_HISTORY_SHARE = 0.1
"""Why-not: a value counts as favoured when at least this share of the history has it..."""

MISSING_MIN_TOP_SHARE = 0.3
"""...and at least this share of the top-k items has it."""


def rank_of(scores: np.ndarray, allowed: np.ndarray, position: int) -> int | None:
    """1-based rank of `position` among allowed items, with `top_k`'s tie rule (lower
    position first); None when it is not allowed or cannot be scored."""
    score = scores[position]
    if not allowed[position] or not np.isfinite(score):
        return None
    above = allowed & (scores > score)
    tied_before = allowed[:position] & (scores[:position] == score)
    return int(above.sum() + tied_before.sum()) + 1


def ranked(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """The n best allowed positions, best first (same tie rule as `engine.top_k`)."""
    masked = np.where(allowed & np.isfinite(scores), scores, -np.inf)
    n = min(n, int(np.isfinite(masked).sum()))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-masked, n - 1)[:n] if n < len(masked) else np.arange(len(masked))
    return candidates[np.lexsort((candidates, -masked[candidates]))][:n].astype(np.int64)


def confidence_of(score: float, head_scores: np.ndarray, k: int) -> Confidence:
    """Label an item by its score margin over the items just after the top-k.

    margin = (score − mean(scores at ranks k+1..k+CONFIDENCE_WINDOW)) / std(scores at
    ranks 1..CONFIDENCE_HEAD). Scale-free, so the thresholds HIGH_MARGIN and
    MEDIUM_MARGIN hold across models whose scores live on different scales.
    """
    after = head_scores[k : k + CONFIDENCE_WINDOW]
    reference = (
        float(after.mean()) if len(after) else float(head_scores[-1]) if len(head_scores) else 0.0
    )
    head = head_scores[:CONFIDENCE_HEAD]
    scale = float(head.std()) if len(head) > 1 else 0.0
    if not np.isfinite(score):
        return Confidence(LOW, float("-inf"), reference, scale)
    margin = (score - reference) / scale if scale > 0 else 0.0
    label = HIGH if margin >= HIGH_MARGIN else MEDIUM if margin >= MEDIUM_MARGIN else LOW
    return Confidence(label, float(margin), reference, scale)


def constraint_checks(
    item_filter: ItemFilter | None, catalog: Catalog, position: int
) -> list[ConstraintCheck]:
    """How one item meets each constraint of a filter (case-insensitive, like ItemFilter.mask)."""
    if item_filter is None:
        return []
    checks = []
    for kind, constraints in (("include", item_filter.include), ("exclude", item_filter.exclude)):
        for name, wanted in constraints.items():
            have = catalog.values(name, position)
            hit = bool({v.lower() for v in have} & {w.lower() for w in wanted})
            checks.append(
                ConstraintCheck(
                    kind, name, tuple(sorted(wanted)), have, hit if kind == "include" else not hit
                )
            )
    year = catalog.year(position)
    year_values = () if year is None else (str(year),)
    if item_filter.year_min is not None:
        ok = year is not None and year >= item_filter.year_min
        checks.append(
            ConstraintCheck("year_min", "year", (str(item_filter.year_min),), year_values, ok)
        )
    if item_filter.year_max is not None:
        ok = year is not None and year <= item_filter.year_max
        checks.append(
            ConstraintCheck("year_max", "year", (str(item_filter.year_max),), year_values, ok)
        )
    return checks


class Explainer:
    """Explains scores of one model over one training set and catalog."""

    def __init__(
        self,
        model: Recommender,
        train: Dataset,
        graph: AttributeGraph | None = None,
        top_reasons: int = 3,
        max_paths: int = 5,
        max_shared_values: int = 3,
    ) -> None:
        self.model = model
        self.catalog = train.catalog
        self.graph = graph if graph is not None else AttributeGraph.from_catalog(train.catalog)
        self.top_reasons = top_reasons
        self.max_paths = max_paths
        self.max_shared_values = max_shared_values
        self._by_item: sp.csc_matrix = train.matrix.tocsc()

    # ----- one piece of evidence each ----------------------------------------------------
    def _history_evidence(
        self, attribution: Attribution, row: int, top: int
    ) -> tuple[list[HistoryContribution], list[HistoryContribution], float]:
        """(cited items pushing the score up, items pushing it down, cited share)."""
        weights = attribution.weights[row]
        shares = shares_of(weights)
        order = np.argsort(-weights, kind="stable")
        up = [j for j in order[:top] if weights[j] > 0]
        down = [j for j in order[::-1][:top] if weights[j] < 0]

        def contribution(j: int) -> HistoryContribution:
            position = int(attribution.history[j])
            return HistoryContribution(
                position=position,
                item_id=self.catalog.item_ids[position],
                title=self.catalog.titles[position],
                contribution=float(weights[j]),
                share=float(shares[j]),
            )

        cited_share = float(shares[up].sum()) if up else 0.0
        return [contribution(j) for j in up], [contribution(j) for j in down], cited_share

    def _paths(
        self, cited_lists: list[list[HistoryContribution]], targets: np.ndarray
    ) -> list[tuple[list[PathEvidence], list[SharedValue]]]:
        """Attribute paths and shared values for every explained item, in one sparse pass.

        Path weight = idf(value) × the liked item's share of the score (see graph.paths).
        """
        owners = np.array([row for row, cited in enumerate(cited_lists) for _ in cited], np.int64)
        flat = [c for cited in cited_lists for c in cited]
        if not flat:
            return [([], []) for _ in cited_lists]
        sources = np.array([c.position for c in flat], dtype=np.int64)
        source_weights = np.array([max(c.share, 0.0) for c in flat])
        pairs, values = self.graph.shared_values(sources, targets[owners])
        weights = self.graph.idf[values] * source_weights[pairs]
        order = np.lexsort((values, pairs, -weights))
        results = []
        for row in range(len(cited_lists)):
            mine = order[owners[pairs[order]] == row]
            evidence = [
                PathEvidence(
                    from_position=int(sources[pairs[i]]),
                    from_item_id=flat[pairs[i]].item_id,
                    from_title=flat[pairs[i]].title,
                    field=self.graph.value_fields[values[i]],
                    value=self.graph.value_labels[values[i]],
                    weight=float(weights[i]),
                )
                for i in mine[: self.max_paths]
            ]
            totals: dict[int, float] = {}
            titles: dict[int, list[str]] = {}
            for i in mine:
                value = int(values[i])
                totals[value] = totals.get(value, 0.0) + float(weights[i])
                titles.setdefault(value, []).append(flat[pairs[i]].title)
            best = sorted(totals, key=lambda v: (-totals[v], v))[: self.max_shared_values]
            shared = [
                SharedValue(
                    field=self.graph.value_fields[v],
                    value=self.graph.value_labels[v],
                    weight=totals[v],
                    liked_titles=tuple(titles[v]),
                )
                for v in best
            ]
            results.append((evidence, shared))
        return results

    def _columns_without_user(self, positions: np.ndarray, user_row: int | None) -> sp.csc_matrix:
        """users × given items, with the asking user's row emptied (indices are user rows)."""
        columns = self._by_item[:, positions]
        if user_row is not None:
            columns.data[columns.indices == user_row] = 0.0
            columns.eliminate_zeros()
        return columns

    def _collaborative(
        self,
        cited_lists: list[list[HistoryContribution]],
        targets: np.ndarray,
        user_row: int | None,
    ) -> list[CollaborativeEvidence | None]:
        """Co-interaction counts for every explained item with sparse products.

        users × cited-items, summed per explained item, says who touched any of its
        cited items; multiplied with the explained items' columns, who also touched it.
        """
        owners = np.array([row for row, cited in enumerate(cited_lists) for _ in cited], np.int64)
        positions = np.array([c.position for cited in cited_lists for c in cited], np.int64)
        if len(positions) == 0:
            return [None for _ in cited_lists]
        by_cited = self._columns_without_user(positions, user_row)
        by_target = self._columns_without_user(targets, user_row)
        selector = sp.csr_matrix(
            (np.ones(len(owners)), (np.arange(len(owners)), owners)),
            shape=(len(owners), len(targets)),
        )
        touched = (by_cited @ selector).tocsc()
        touched.data[:] = 1.0
        users_with_cited = touched.getnnz(axis=0)
        users_with_both = np.asarray(touched.multiply(by_target).sum(axis=0)).ravel()
        co_counts = (by_cited.T @ by_target).toarray()
        per_cited = co_counts[np.arange(len(owners)), owners]
        results: list[CollaborativeEvidence | None] = []
        for row, cited in enumerate(cited_lists):
            if not cited:
                results.append(None)
                continue
            results.append(
                CollaborativeEvidence(
                    cited_item_ids=tuple(c.item_id for c in cited),
                    users_with_cited=int(users_with_cited[row]),
                    users_with_both=int(users_with_both[row]),
                    per_cited_item=tuple(int(x) for x in per_cited[owners == row]),
                )
            )
        return results

    def _missing_values(
        self, history: np.ndarray, top: np.ndarray, target: int
    ) -> tuple[MissingValue, ...]:
        if len(history) == 0 or len(top) == 0:
            return ()
        incidence = self.graph.incidence
        history_share = np.asarray(incidence[history].mean(axis=0)).ravel()
        top_share = np.asarray(incidence[top].mean(axis=0)).ravel()
        lacks = np.ones(self.graph.n_values, dtype=bool)
        lacks[self.graph.item_values(target)] = False
        keep = (
            lacks
            & (history_share >= MISSING_MIN_HISTORY_SHARE)
            & (top_share >= MISSING_MIN_TOP_SHARE)
        )
        candidates = np.flatnonzero(keep)
        strength = history_share[candidates] * top_share[candidates] * self.graph.idf[candidates]
        best = candidates[np.lexsort((candidates, -strength))][: self.max_shared_values]
        return tuple(
            MissingValue(
                field=self.graph.value_fields[v],
                value=self.graph.value_labels[v],
                history_share=float(history_share[v]),
                top_share=float(top_share[v]),
            )
            for v in best
        )

    @staticmethod
    def _confidence(score: float, head_scores: np.ndarray, k: int, recommended: bool) -> Confidence:
        """Items outside the list are always low, whatever their margin."""
        confidence = confidence_of(score, head_scores, k)
        if recommended:
            return confidence
        return Confidence(LOW, confidence.margin, confidence.reference_score, confidence.scale)

    # ----- the whole explanation ----------------------------------------------------------
    def explain(
        self,
        history: np.ndarray,
        items: Sequence[int] | np.ndarray,
        k: int = 10,
        scores: np.ndarray | None = None,
        item_filter: ItemFilter | None = None,
        exclude: Sequence[int] | np.ndarray = (),
        user_row: int | None = None,
        top_reasons: int | None = None,
    ) -> list[Explanation]:
        """Explanations of `items` for a history of distinct positions.

        `scores` (the model's full score row for this history) is recomputed when not
        given; `item_filter` and `exclude` define the list the items are ranked in, as in
        `Engine.recommend`; `user_row` is left out of the collaborative counts;
        `top_reasons` overrides how many history items are cited.
        """
        cite = self.top_reasons if top_reasons is None else top_reasons
        history = np.asarray(history, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if scores is None:
            scores = self.model.score([history])[0]
        scores = np.asarray(scores, dtype=np.float64)
        unseen = np.isfinite(scores)
        unseen[history] = False
        unseen[np.asarray(exclude, dtype=np.int64)] = False
        allowed = unseen & item_filter.mask(self.catalog) if item_filter else unseen
        head = ranked(scores, allowed, max(k + CONFIDENCE_WINDOW, CONFIDENCE_HEAD))
        head_scores = scores[head]
        top = head[:k]
        cutoff = float(head_scores[k - 1]) if len(head) >= k else None
        attribution = attribute(self.model, history, items)

        evidence = [self._history_evidence(attribution, row, cite) for row in range(len(items))]
        cited_lists = [cited for cited, _, _ in evidence]
        path_evidence = self._paths(cited_lists, items)
        collaborative = self._collaborative(cited_lists, items, user_row)

        explanations = []
        for row, position in enumerate(items.tolist()):
            rank = rank_of(scores, allowed, position)
            recommended = rank is not None and rank <= k
            cited, pushing_down, cited_share = evidence[row]
            paths, shared = path_evidence[row]
            checks = constraint_checks(item_filter, self.catalog, position)
            why_not = None
            if not recommended:
                why_not = WhyNot(
                    k=k,
                    rank=rank,
                    rank_unfiltered=rank_of(scores, unseen, position),
                    cutoff_score=cutoff,
                    filter_violations=tuple(c for c in checks if not c.satisfied),
                    missing_values=self._missing_values(history, top, position),
                    pushing_down=tuple(pushing_down),
                    scorable=bool(np.isfinite(scores[position])),
                )
            explanations.append(
                Explanation(
                    position=position,
                    item_id=self.catalog.item_ids[position],
                    title=self.catalog.titles[position],
                    score=float(scores[position]),
                    rank=rank,
                    k=k,
                    recommended=recommended,
                    history_method=attribution.method if len(history) else "none",
                    history=cited,
                    cited_share=cited_share,
                    paths=paths,
                    shared_values=shared,
                    constraints=checks,
                    collaborative=collaborative[row],
                    confidence=self._confidence(
                        float(scores[position]), head_scores, k, recommended
                    ),
                    why_not=why_not,
                )
            )
        return explanations
