"""The one ranking rule: every entry point agrees with a full stable sort, ties included."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from whyrec.ranking import (
    NO_ITEM,
    exclude_seen,
    rank_of,
    ranks_in_rows,
    top_k,
    top_k_rows,
    unique_in_order,
    unseen_top_k,
)


def full_sort(row: np.ndarray, allowed: np.ndarray) -> list[int]:
    """The reference: allowed finite scores, descending, ties by lower position."""
    keep = [p for p in range(len(row)) if allowed[p] and np.isfinite(row[p])]
    return sorted(keep, key=lambda p: (-row[p], p))


def tied_scores(rng: np.random.Generator, shape) -> np.ndarray:
    scores = rng.integers(0, 12, shape).astype(np.float64)  # ties everywhere, at the cut too
    scores[rng.random(shape) < 0.1] = -np.inf
    scores[rng.random(shape) < 0.02] = np.nan
    return scores


def test_top_k_one_row_and_many_rows_match_a_full_sort():
    rng = np.random.default_rng(3)
    scores = tied_scores(rng, (40, 90))
    for k in (1, 5, 17, 90, 120):
        rows = top_k_rows(scores, k)
        assert rows.shape == (40, k)
        for r, row in enumerate(scores):
            expected = full_sort(row, np.ones(len(row), bool))[:k]
            assert top_k(row, k).tolist() == expected
            assert rows[r][rows[r] != NO_ITEM].tolist() == expected
            assert (rows[r][len(expected) :] == NO_ITEM).all()


def test_allowed_mask_and_rank_of_agree_with_the_list():
    rng = np.random.default_rng(4)
    row = tied_scores(rng, 300)
    allowed = rng.random(300) > 0.3
    listed = top_k(row, 300, allowed).tolist()
    assert listed == full_sort(row, allowed)
    for rank, position in enumerate(listed, start=1):
        assert rank_of(row, allowed, position) == rank
    outside = [p for p in range(300) if p not in set(listed)]
    assert all(rank_of(row, allowed, p) is None for p in outside)


def test_ranks_in_rows_is_the_zero_based_rank_of_the_tie_rule():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 6, (20, 50)).astype(np.float64)
    targets = rng.integers(0, 50, 20)
    ranks = ranks_in_rows(scores, targets)
    everything = np.ones(50, bool)
    expected = [rank_of(scores[r], everything, int(t)) - 1 for r, t in enumerate(targets)]
    assert ranks.tolist() == expected


def test_seen_items_are_never_ranked_for_both_seen_forms():
    rng = np.random.default_rng(6)
    scores = rng.normal(size=(3, 30))
    histories = [np.array([0, 5]), np.array([], dtype=np.int64), np.array([29, 1, 2])]
    matrix = sp.csr_matrix(
        (np.ones(5), (np.array([0, 0, 2, 2, 2]), np.array([0, 5, 29, 1, 2]))), shape=(3, 30)
    )
    from_lists = unseen_top_k(scores.copy(), histories, 30)
    from_matrix = unseen_top_k(scores.copy(), matrix, 30)
    assert (from_lists == from_matrix).all()
    for row, history in zip(from_lists, histories, strict=True):
        assert not set(history.tolist()) & set(row.tolist())
    assert np.isneginf(exclude_seen(scores.copy(), histories)[0, [0, 5]]).all()


def test_unique_in_order_keeps_first_occurrences():
    assert unique_in_order([5, 3, 5, 1, 3, 9]).tolist() == [5, 3, 1, 9]
    assert unique_in_order([]).tolist() == []
