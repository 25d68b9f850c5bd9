"""The ranking rules, written once: top-k over score rows, the rank of an item, seen items.

One tie rule everywhere: a higher score ranks first, equal scores rank by lower catalog
position, and items without a finite score (-inf, NaN, or not allowed) are never ranked.
The rule is exact at the cut-off too: a plain `argpartition` picks an arbitrary subset of
the items tied with the k-th score, which would make a top-10 depend on whether a top-20
was asked for (popularity has many ties). The engine, the explainer, evaluation,
fidelity, interpretation, the conversation and SASRec's validation all rank here, so a
list, an item's stated rank and a metric can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

NO_ITEM = -1
"""Padding in `top_k_rows` where a row has fewer than k rankable items."""


def rankable(scores: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """A copy of `scores` where every item that may not be ranked scores -inf."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    return scores


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k positions per row, best first, `NO_ITEM` padding where fewer than k are finite.

    Finds the k-th largest score per row (O(n_items)), keeps everything above it and the
    lowest-positioned items equal to it, then sorts those k by (score, position).
    """
    scores = rankable(np.atleast_2d(scores))
    n_rows, n_items = scores.shape
    take = min(k, n_items)
    if take <= 0:
        return np.full((n_rows, max(k, 0)), NO_ITEM, dtype=np.int64)
    kth = -np.partition(-scores, take - 1, axis=1)[:, take - 1 : take]
    above = scores > kth
    tied = scores == kth
    room = take - above.sum(axis=1, keepdims=True)
    chosen = above | tied
    crowded = np.flatnonzero(tied.sum(axis=1) > room[:, 0])  # more ties than free slots
    if len(crowded):
        first_tied = np.cumsum(tied[crowded], axis=1, dtype=np.int32) <= room[crowded]
        chosen[crowded] = above[crowded] | (tied[crowded] & first_tied)
    candidates = np.nonzero(chosen)[1].reshape(n_rows, take)
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    best = np.take_along_axis(candidates, order, axis=1)
    best[~np.isfinite(np.take_along_axis(values, order, axis=1))] = NO_ITEM
    if take < k:
        best = np.hstack([best, np.full((n_rows, k - take), NO_ITEM, dtype=best.dtype)])
    return best.astype(np.int64)


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Positions of the (at most) k best finite, allowed scores of one row, best first.

    A plain argpartition picks the k candidates (NaN sorts last, so it is never picked);
    only when more items tie with the k-th score than were picked are the lowest-positioned
    of them taken instead, so the rule stays exact at no cost in the usual case.
    """
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    n_items = len(scores)
    take = min(k, int(np.isfinite(scores).sum()))
    if take <= 0:
        return np.zeros(0, dtype=np.int64)
    if take < n_items:
        candidates = np.argpartition(-scores, take - 1)[:take]
        kth = scores[candidates].min()
        if np.count_nonzero(scores == kth) > np.count_nonzero(scores[candidates] == kth):
            above = np.flatnonzero(scores > kth)
            tied = np.flatnonzero(scores == kth)[: take - len(above)]
            candidates = np.concatenate([above, tied])
    else:
        candidates = np.arange(n_items)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order].astype(np.int64)


def rank_of(scores: np.ndarray, allowed: np.ndarray, position: int) -> int | None:
    """1-based rank of `position` among allowed items, by the tie rule above; None when it
    is not allowed or has no finite score."""
    score = scores[position]
    if not allowed[position] or not np.isfinite(score):
        return None
    above = allowed & (scores > score)
    tied_before = allowed[:position] & (scores[:position] == score)
    return int(above.sum() + tied_before.sum()) + 1


def ranks_in_rows(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """0-based rank of `positions[i]` in row i of `scores`, by the tie rule above
    (the item's own score is assumed finite)."""
    rows = np.arange(len(positions))
    own = scores[rows, positions][:, None]
    before = np.arange(scores.shape[1])[None, :] < np.asarray(positions)[:, None]
    return ((scores > own) | ((scores == own) & before)).sum(axis=1)


def exclude_seen(scores: np.ndarray, seen: sp.csr_matrix | Sequence[np.ndarray]) -> np.ndarray:
    """Set each row's seen items (a CSR matrix of rows, or one position array per row) to
    -inf, in place, so they are never ranked; returns `scores`."""
    if sp.issparse(seen):
        seen = sp.csr_matrix(seen)
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        scores[rows, seen.indices] = -np.inf
        return scores
    for row, items in enumerate(seen):
        scores[row, np.asarray(items, dtype=np.int64)] = -np.inf
    return scores


def unseen_top_k(
    scores: np.ndarray, seen: sp.csr_matrix | Sequence[np.ndarray], k: int
) -> np.ndarray:
    """`top_k_rows` of a block of score rows with each row's seen items left out
    (overwrites `scores`)."""
    return top_k_rows(exclude_seen(scores, seen), k)


def unique_in_order(positions) -> np.ndarray:
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


@dataclass(frozen=True)
class CandidateScores:
    """A score row stored as the few items a history reaches.

    `values` at `positions` (sorted, distinct), `fill` at every other position of `base`
    (sorted, holding `positions`), -inf elsewhere: the row of a model whose score is a
    sparse product (SANSA, ItemKNN), where an item no history item links to scores 0.
    Ranking it with `top_k_candidates` gives exactly `top_k(dense(), k, allowed)` while
    touching only the candidates, plus as many `fill` items as a short list needs: a
    million-item row cost tens of milliseconds to fill, mask and partition per request.
    """

    positions: np.ndarray
    values: np.ndarray
    base: np.ndarray
    fill: float
    n_items: int

    def dense(self) -> np.ndarray:
        """The full score row (float32), as the model's `score` gives it."""
        row = np.full(self.n_items, -np.inf, dtype=np.float32)
        row[self.base] = self.fill
        row[self.positions] = self.values
        return row

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The scores of some items (any positions of the catalog)."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.full(len(positions), -np.inf, dtype=np.float32)
        out[in_sorted(positions, self.base)] = self.fill
        place = np.searchsorted(self.positions, positions)
        found = in_sorted(positions, self.positions)
        out[found] = self.values[place[found]]
        return out


def top_k_candidates(
    row: CandidateScores, k: int, allowed_among: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """`top_k(row.dense(), k, allowed)` without building the row.

    `allowed_among(positions)` says which of some positions a request may return (the
    engine's one rule, on a subset). Candidates above `fill` rank first; when fewer than k
    of them are allowed, the tie band at `fill` follows in catalog order (scanned in
    growing chunks of `base` until enough are allowed), then candidates below it.
    """
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    values = row.values  # NaN compares false: never above, tied or below the fill score
    above = np.flatnonzero(values > row.fill)
    best = _best_allowed(row.positions[above], values[above], k, allowed_among)
    if len(best) == k or not np.isfinite(row.fill):
        return best
    tied = _fill_band(row, k - len(best), allowed_among, values)
    below = np.flatnonzero((values < row.fill) & np.isfinite(values))
    rest = _best_allowed(
        row.positions[below], values[below], k - len(best) - len(tied), allowed_among
    )
    return np.concatenate([best, tied, rest]).astype(np.int64)


def _best_allowed(
    positions: np.ndarray, values: np.ndarray, k: int,
    allowed_among: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:  # fmt: skip
    """The k best allowed of some sorted positions, by the tie rule, asking the filter only
    about a growing prefix of their ranking (4k, 16k, ... items).

    The prefix is the start of the one total order (score, then position), so its first k
    allowed items are the first k overall; a long history reaches most of a catalog's
    active items, and filtering all of them cost more than ranking them.
    """
    window = 4 * k
    while True:
        ranked = top_k(values, window)
        kept = ranked[allowed_among(positions[ranked])]
        if len(kept) >= k or len(ranked) == len(values):
            return positions[kept[:k]]
        window *= 4


def _fill_band(
    row: CandidateScores, need: int, allowed_among: Callable[[np.ndarray], np.ndarray],
    values: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The first `need` allowed positions scoring exactly `fill`, in catalog order."""
    elsewhere = row.positions[~(values == row.fill)]  # candidates with their own score
    found: list[np.ndarray] = []
    start, chunk, count = 0, max(4 * need, 1024), 0
    while count < need and start < len(row.base):
        block = row.base[start : start + chunk]
        block = block[~in_sorted(block, elsewhere)]
        block = block[allowed_among(block)][: need - count]
        found.append(block)
        count += len(block)
        start, chunk = start + chunk, chunk * 4
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def is_member(values: np.ndarray, of: np.ndarray) -> np.ndarray:
    """`np.isin(values, of)` for many values and a short `of` (a history, exclusions):
    a binary search into sorted `of` instead of numpy's sort of both together."""
    return in_sorted(np.asarray(values), np.sort(np.asarray(of)))


def in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of `values` are in `sorted_set` (a sorted array): binary search, no hashing
    (the catalog's value index and candidate rows are kept sorted for it)."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    place = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[place] == values
