"""Build `Explanation`s: history attribution, attribute paths, constraints, co-interaction
counts, confidence, and "why not" for items outside the list.

One `Explainer` serves many requests: it keeps the attribute graph and a column-major
copy of the training matrix, so each explanation costs a few sparse look-ups plus one
attribution call (exact, or one batched occlusion pass) for the whole list.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from whyrec.data.dataset import Dataset
from whyrec.explain.attribution import GENERATION_PATH, Attribution, attribute, shares_of
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explanation import (
    HIGH,
    LOW,
    MEDIUM,
    CollaborativeEvidence,
    Confidence,
    Explanation,
    MissingValue,
    PathEvidence,
    SharedValue,
    WhyNot,
)
from whyrec.filters import ItemFilter
from whyrec.graph.attributes import AttributeGraph
from whyrec.models.base import Recommender
from whyrec.ranking import rank_of, top_k
from whyrec.sparse_rows import distinct_per_group, gather_rows, place_in_run

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


def strongest(
    values: np.ndarray, top: int, later_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the `top` largest values of each row, row by row, largest first;
    equal values in column order, or in reverse column order with `later_first`.

    The first `top` columns of a stable descending argsort (reversed for `later_first`),
    without sorting whole rows: histories run to thousands of items, three are cited.
    """
    n_columns = values.shape[1]
    if top <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    candidates = np.ones(values.shape, dtype=bool)
    if n_columns > top:
        threshold = np.partition(values, n_columns - top, axis=1)[:, [n_columns - top]]
        candidates = values >= threshold  # ties at the threshold included
    rows, columns = np.nonzero(candidates)
    order = np.lexsort((-columns if later_first else columns, -values[rows, columns], rows))
    rows, columns = rows[order], columns[order]
    firsts = place_in_run(rows) < top
    return rows[firsts], columns[firsts]


def confidence_of(score: float, head_scores: np.ndarray, k: int) -> Confidence:
    """Label an item by its score margin over the items just after the top-k.

    margin = (score − mean(scores at ranks k+1..k+CONFIDENCE_WINDOW)) / std(scores at
    ranks 1..CONFIDENCE_HEAD). Scale-free, so the thresholds HIGH_MARGIN and
    MEDIUM_MARGIN hold across models whose scores live on different scales.
    """
    return confidence_against(score, *confidence_reference(head_scores, k))


def confidence_reference(head_scores: np.ndarray, k: int) -> tuple[float, float]:
    """(reference score, scale) of `confidence_of`: the same for every item of one list."""
    after = head_scores[k : k + CONFIDENCE_WINDOW]
    reference = (
        float(after.mean()) if len(after) else float(head_scores[-1]) if len(head_scores) else 0.0
    )
    head = head_scores[:CONFIDENCE_HEAD]
    scale = float(head.std()) if len(head) > 1 else 0.0
    return reference, scale


def confidence_against(score: float, reference: float, scale: float) -> Confidence:
    """The label of one score, given its list's `confidence_reference`."""
    if not np.isfinite(score):
        return Confidence(LOW, float("-inf"), reference, scale)
    margin = (score - reference) / scale if scale > 0 else 0.0
    label = HIGH if margin >= HIGH_MARGIN else MEDIUM if margin >= MEDIUM_MARGIN else LOW
    return Confidence(label, float(margin), reference, scale)


@dataclass(frozen=True)
class CitedItems:
    """The cited history items of every explained item, also flattened once for the
    vectorized evidence: `items[i]` is cited by explained row `owners[i]`."""

    lists: list[list[HistoryContribution]]
    items: list[HistoryContribution]
    owners: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, lists: list[list[HistoryContribution]]) -> CitedItems:
        items = [c for cited in lists for c in cited]
        owners = np.repeat(np.arange(len(lists), dtype=np.int64), [len(c) for c in lists])
        positions = np.array([c.position for c in items], dtype=np.int64)
        return cls(lists, items, owners, positions)


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
        self, attribution: Attribution, top: int, explain_down: np.ndarray
    ) -> list[tuple[list[HistoryContribution], list[HistoryContribution], float]]:
        """Per explained item: (cited items pushing the score up, items pushing it down,
        cited share). Only the few cited items become objects; the items pushing down
        only for rows with `explain_down` (why-not)."""
        weights = attribution.weights
        shares = shares_of(weights)
        history = attribution.history.tolist()
        ups = self._cited(history, weights, shares, weights > 0, strongest(weights, top))
        downs: list[tuple[list[HistoryContribution], np.ndarray]] = [([], np.zeros(0))] * len(ups)
        if explain_down.any():
            # pushing down the most: the reverse of the stable order of the weights
            rows = np.flatnonzero(explain_down)
            picked = strongest(-weights[rows], top, later_first=True)
            down_rows = self._cited(history, weights[rows], shares[rows], weights[rows] < 0, picked)
            for row, down in zip(rows.tolist(), down_rows, strict=True):
                downs[row] = down
        return [
            # the share sum stays a numpy sum over the same values: identical last bits
            (up, down, float(up_shares.sum()) if up else 0.0)
            for (up, up_shares), (down, _) in zip(ups, downs, strict=True)
        ]

    def _cited(
        self,
        history: list[int],
        weights: np.ndarray,
        shares: np.ndarray,
        wanted: np.ndarray,
        picked: tuple[np.ndarray, np.ndarray],
    ) -> list[tuple[list[HistoryContribution], np.ndarray]]:
        """Per row, the picked history items that are `wanted` as contributions, and
        their shares as an array."""
        rows, columns = picked
        keep = wanted[rows, columns]
        rows, columns = rows[keep], columns[keep]
        bounds = np.searchsorted(rows, np.arange(weights.shape[0] + 1)).tolist()
        picked_shares = shares[rows, columns]
        contributions = [
            self._contribution(history[j], weight, share)
            for j, weight, share in zip(
                columns.tolist(),
                weights[rows, columns].tolist(),
                picked_shares.tolist(),
                strict=True,
            )
        ]
        return [
            (contributions[start:end], picked_shares[start:end])
            for start, end in itertools.pairwise(bounds)
        ]

    def _contribution(self, position: int, weight: float, share: float) -> HistoryContribution:
        return HistoryContribution(
            position=position,
            item_id=self.catalog.item_ids[position],
            title=self.catalog.titles[position],
            contribution=weight,
            share=share,
        )

    def _paths(
        self, cited: CitedItems, targets: np.ndarray
    ) -> list[tuple[list[PathEvidence], list[SharedValue]]]:
        """Attribute paths and shared values for every explained item, in one pass.

        Path weight = idf(value) × the liked item's share of the score (see graph.paths).
        """
        if not cited.items:
            return [([], []) for _ in cited.lists]
        source_weights = np.array([max(c.share, 0.0) for c in cited.items])
        pairs, values = self.graph.shared_values(cited.positions, targets[cited.owners])
        weights = self.graph.idf[values] * source_weights[pairs]
        rows = cited.owners[pairs]
        # grouped by explained item; inside a group heaviest first, then cited order, value
        order = np.lexsort((values, pairs, -weights, rows))
        bounds = np.searchsorted(rows[order], np.arange(len(cited.lists) + 1)).tolist()
        paths = list(
            zip(
                [cited.items[p] for p in pairs[order].tolist()],
                values[order].tolist(),
                weights[order].tolist(),
                strict=True,
            )
        )
        return [
            (self._path_evidence(mine[: self.max_paths]), self._shared(mine))
            for mine in (paths[bounds[row] : bounds[row + 1]] for row in range(len(cited.lists)))
        ]

    def _path_evidence(
        self, paths: list[tuple[HistoryContribution, int, float]]
    ) -> list[PathEvidence]:
        return [
            PathEvidence(
                from_position=source.position,
                from_item_id=source.item_id,
                from_title=source.title,
                field=self.graph.value_fields[value],
                value=self.graph.value_labels[value],
                weight=weight,
            )
            for source, value, weight in paths
        ]

    def _shared(self, paths: list[tuple[HistoryContribution, int, float]]) -> list[SharedValue]:
        """The heaviest values summed over one item's paths (summed heaviest path first)."""
        totals: dict[int, float] = {}
        titles: dict[int, list[str]] = {}
        for source, value, weight in paths:
            totals[value] = totals.get(value, 0.0) + weight
            titles.setdefault(value, []).append(source.title)
        best = sorted(totals, key=lambda v: (-totals[v], v))[: self.max_shared_values]
        return [
            SharedValue(
                field=self.graph.value_fields[v],
                value=self.graph.value_labels[v],
                weight=totals[v],
                liked_titles=tuple(titles[v]),
            )
            for v in best
        ]

    def _collaborative(
        self, cited: CitedItems, targets: np.ndarray, user_row: int | None
    ) -> list[CollaborativeEvidence | None]:
        """Co-interaction counts for every explained item, as sets of (item, user) keys.

        A key owner × n_users + user names "this user touched a cited item of explained
        item `owner`" (or the item itself): distinct keys count the users with any cited
        item, those also among the item's own keys the users with both. numpy on the
        column arrays, not sparse products: see `whyrec.sparse_rows`.
        """
        if not cited.items:
            return [None for _ in cited.lists]
        n_users, n_cited = self._by_item.shape[0], len(cited.items)
        # the users of every cited item and every explained item in one gather
        index, users = gather_rows(self._by_item, np.concatenate([cited.positions, targets]))
        if user_row is not None:  # the asking user is not "another user"
            others = users != user_row
            index, users = index[others], users[others]
        owners = np.concatenate([cited.owners, np.arange(len(targets))])
        keys = owners[index] * n_users + users
        is_cited = index < n_cited
        cited_index, cited_keys = index[is_cited], keys[is_cited]
        also_target = np.isin(cited_keys, keys[~is_cited])
        per_cited = np.bincount(cited_index[also_target], minlength=n_cited).tolist()
        with_cited = distinct_per_group(cited_keys, n_users, len(targets))
        with_both = distinct_per_group(cited_keys[also_target], n_users, len(targets))
        results: list[CollaborativeEvidence | None] = []
        start = 0
        for items, users_with_cited, users_with_both in zip(
            cited.lists, with_cited.tolist(), with_both.tolist(), strict=True
        ):
            results.append(
                CollaborativeEvidence(
                    cited_item_ids=tuple(c.item_id for c in items),
                    users_with_cited=users_with_cited,
                    users_with_both=users_with_both,
                    per_cited_item=tuple(per_cited[start : start + len(items)]),
                )
                if items
                else None
            )
            start += len(items)
        return results

    def _missing_values(
        self, history: np.ndarray, top: np.ndarray, target: int
    ) -> tuple[MissingValue, ...]:
        if len(history) == 0 or len(top) == 0:
            return ()
        history_share = self._value_shares(history)
        top_share = self._value_shares(top)
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

    def _value_shares(self, items: np.ndarray) -> np.ndarray:
        """The share of `items` carrying each value node (the mean of their incidence rows).

        Counted on the CSR arrays; a share is the running sum of 1/len(items) once per
        item carrying the value, the very additions a sparse column mean makes, so the
        thresholds above compare the same floats (k × (1/n) can differ in the last bit).
        """
        _, values = gather_rows(self.graph.incidence, items)
        counts = np.bincount(values, minlength=self.graph.n_values)
        running = np.cumsum(np.full(len(items), 1.0 / len(items)))  # sequential sums
        return np.concatenate([[0.0], running])[counts]

    @staticmethod
    def _confidence(score: float, reference: tuple[float, float], recommended: bool) -> Confidence:
        """Items outside the list are always low, whatever their margin."""
        confidence = confidence_against(score, *reference)
        if recommended:
            return confidence
        return Confidence(LOW, confidence.margin, confidence.reference_score, confidence.scale)

    @staticmethod
    def _ranks(
        scores: np.ndarray, allowed: np.ndarray, head: np.ndarray, items: np.ndarray
    ) -> list[int | None]:
        """`rank_of` each item, read off the ranked head where it is in it (the head
        follows the same exact tie rule, `whyrec.ranking`)."""
        place = {position: rank for rank, position in enumerate(head.tolist(), start=1)}
        return [place.get(p) or rank_of(scores, allowed, p) for p in items.tolist()]

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
        head = top_k(scores, max(k + CONFIDENCE_WINDOW, CONFIDENCE_HEAD), allowed)
        head_scores = scores[head]
        top = head[:k]
        cutoff = float(head_scores[k - 1]) if len(head) >= k else None
        attribution = attribute(self.model, history, items)
        ranks = self._ranks(scores, allowed, head, items)
        recommended = [rank is not None and rank <= k for rank in ranks]

        evidence = self._history_evidence(attribution, cite, ~np.array(recommended, bool))
        cited = CitedItems.of([up for up, _, _ in evidence])
        path_evidence = self._paths(cited, items)
        if attribution.method == GENERATION_PATH:
            # the clusters of the generated index the cited items share (HyPE's path)
            along = self.model.generation_path_values(cited.lists, items)  # type: ignore[attr-defined]
            path_evidence = [
                (paths, shared) for (paths, _), shared in zip(path_evidence, along, strict=True)
            ]
        collaborative = self._collaborative(cited, items, user_row)

        reference = confidence_reference(head_scores, k)
        explanations = []
        for row, (position, score) in enumerate(
            zip(items.tolist(), scores[items].tolist(), strict=True)
        ):
            rank = ranks[row]
            up, pushing_down, cited_share = evidence[row]
            paths, shared = path_evidence[row]
            checks = item_filter.checks(self.catalog, position) if item_filter else []
            why_not = None
            if not recommended[row]:
                why_not = WhyNot(
                    k=k,
                    rank=rank,
                    rank_unfiltered=rank_of(scores, unseen, position),
                    cutoff_score=cutoff,
                    filter_violations=tuple(c for c in checks if not c.satisfied),
                    missing_values=self._missing_values(history, top, position),
                    pushing_down=tuple(pushing_down),
                    scorable=bool(np.isfinite(score)),
                )
            explanations.append(
                Explanation(
                    position=position,
                    item_id=self.catalog.item_ids[position],
                    title=self.catalog.titles[position],
                    score=score,
                    rank=rank,
                    k=k,
                    recommended=recommended[row],
                    history_method=attribution.method if len(history) else "none",
                    history=up,
                    cited_share=cited_share,
                    paths=paths,
                    shared_values=shared,
                    constraints=checks,
                    collaborative=collaborative[row],
                    confidence=self._confidence(score, reference, recommended[row]),
                    why_not=why_not,
                )
            )
        return explanations
