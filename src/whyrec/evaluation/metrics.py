"""Ranking metrics exactly as docs/metrics.md defines them (Elliot / RecBole conventions).

Every function is vectorised over users. Inputs share one vocabulary:

- `recommended`: int array (n_users, k_max) of catalog positions, best first; a row that
  has fewer than k_max scorable items is padded with -1 (a padded slot is never a hit and
  never counts as a recommended item).
- `hits`: bool array (n_users, k_max), `hits[u, r]` = the item at rank r+1 is relevant.
- `n_relevant`: int array (n_users,), |Rel_u|, the size of each user's held-out set.
- `popularity`: φ(i), distinct training users per item (`Dataset.item_popularity()`).

Per-user metrics return one float per user so that confidence intervals and paired
significance tests can be computed on them; aggregate metrics (coverage, Gini, PopRSP,
PopREO) return one number for the whole set of lists.

Conventions worth stating (every report repeats them):

- nDCG is binary; its ideal DCG runs over min(|Rel_u|, k) ranks (Elliot's
  nDCGRendle2020, RecBole's NDCG). Recall divides by |Rel_u|, `recall_norm` by
  min(|Rel_u|, k).
- Precision divides by k even when fewer than k items could be recommended.
- `gini` is G in RecBole's convention (0 = every item recommended equally often,
  1 = all slots taken by one item); Elliot reports 1 − G.
- EFD uses max(φ(i), 1) inside the logarithm so an item unseen in training (possible
  only when cold test items are kept) gets the largest finite novelty instead of ∞.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SHORT_HEAD_SHARE = 0.8
"""The short head holds the most popular items covering this share of training interactions."""


# ----- helpers -------------------------------------------------------------------------
def discounts(k: int) -> np.ndarray:
    """disc(r) = 1 / log2(r + 1) for the 1-based ranks r = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _cut(array: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return array[:, :k]


def hit_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """hits[u, r]: is recommended[u, r] among user u's relevant items (row u of `relevant`)?

    Done by sorted-key lookup rather than sparse fancy indexing so it stays linear in the
    number of slots even for hundreds of thousands of users.
    """
    relevant = sp.csr_matrix(relevant)
    n_users, n_items = relevant.shape
    if recommended.shape[0] != n_users:
        raise ValueError("recommended and relevant must have one row per user")
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr))
    relevant_keys = np.sort(rows * n_items + relevant.indices.astype(np.int64))
    slot_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + recommended
    found = np.searchsorted(relevant_keys, slot_keys)
    found = np.minimum(found, max(len(relevant_keys) - 1, 0))
    if len(relevant_keys) == 0:
        return np.zeros(recommended.shape, dtype=bool)
    return (relevant_keys[found] == slot_keys) & (recommended >= 0)


def list_lengths(recommended: np.ndarray, k: int) -> np.ndarray:
    """|L_u|: number of real (not padded) items in each top-k list."""
    return (_cut(recommended, k) >= 0).sum(axis=1)


def long_tail_mask(popularity: np.ndarray, share: float = SHORT_HEAD_SHARE) -> np.ndarray:
    """True for long-tail items.

    Items are sorted by decreasing φ (ties: lower catalog position first); the short head
    is the shortest prefix whose cumulative φ reaches `share` of all training
    interactions; everything else, including never-seen items, is the long tail.
    """
    popularity = np.asarray(popularity, dtype=np.float64)
    total = popularity.sum()
    tail = np.ones(len(popularity), dtype=bool)
    if total <= 0:
        return tail
    order = np.lexsort((np.arange(len(popularity)), -popularity))
    cumulative = np.cumsum(popularity[order])
    n_head = int(np.searchsorted(cumulative, share * total - 1e-9 * total, side="left")) + 1
    tail[order[:n_head]] = False
    return tail


# ----- accuracy (per user) -------------------------------------------------------------
def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """|L_u ∩ Rel_u| / k."""
    return _cut(hits, k).sum(axis=1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """|L_u ∩ Rel_u| / |Rel_u|."""
    return _cut(hits, k).sum(axis=1) / np.maximum(n_relevant, 1)


def recall_norm(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """|L_u ∩ Rel_u| / min(|Rel_u|, k): 1 is reachable for every user."""
    return _cut(hits, k).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary nDCG with the ideal DCG over min(|Rel_u|, k) ranks."""
    disc = discounts(k)
    dcg = _cut(hits, k) @ disc
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(disc)])
    ideal = ideal_cumulative[np.minimum(n_relevant, k)]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = (1 / min(|Rel_u|, k)) Σ_{r≤k} Precision@r · hit(r); MAP is its mean."""
    cut = _cut(hits, k).astype(np.float64)
    precision_at_r = np.cumsum(cut, axis=1) / np.arange(1, cut.shape[1] + 1)
    return (precision_at_r * cut).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1)


def reciprocal_rank(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first hit, 0 without a hit; MRR is its mean."""
    cut = _cut(hits, k)
    any_hit = cut.any(axis=1)
    first = np.argmax(cut, axis=1) + 1
    return np.where(any_hit, 1.0 / first, 0.0)


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if the top-k list holds at least one relevant item."""
    return _cut(hits, k).any(axis=1).astype(np.float64)


def f1(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Harmonic mean of Precision@k and Recall@k per user (0 when both are 0)."""
    p, r = precision(hits, k), recall(hits, n_relevant, k)
    total = p + r
    return np.divide(2 * p * r, total, out=np.zeros_like(total), where=total > 0)


# ----- novelty and popularity (per user) -------------------------------------------------
def _expected_novelty(
    hits: np.ndarray, recommended: np.ndarray, k: int, novelty: np.ndarray
) -> np.ndarray:
    """C · Σ_r disc(r) · hit(r) · novelty(L_u(r)), C = 1 / Σ_{r≤k} disc(r)."""
    disc = discounts(k)
    items = _cut(recommended, k)
    gains = np.where(items >= 0, novelty[np.maximum(items, 0)], 0.0) * _cut(hits, k)
    return (gains @ disc) / disc.sum()


def epc(
    hits: np.ndarray, recommended: np.ndarray, k: int, popularity: np.ndarray, n_train_users: int
) -> np.ndarray:
    """Expected popularity complement: novelty 1 − φ(i)/|U_train| of the relevant items found."""
    novelty = 1.0 - np.asarray(popularity, dtype=np.float64) / max(n_train_users, 1)
    return _expected_novelty(hits, recommended, k, novelty)


def efd(hits: np.ndarray, recommended: np.ndarray, k: int, popularity: np.ndarray) -> np.ndarray:
    """Expected free discovery: novelty −log2(φ(i) / Σ_j φ(j)) of the relevant items found."""
    popularity = np.asarray(popularity, dtype=np.float64)
    total = max(popularity.sum(), 1.0)
    novelty = -np.log2(np.maximum(popularity, 1.0) / total)
    return _expected_novelty(hits, recommended, k, novelty)


def aclt(recommended: np.ndarray, k: int, long_tail: np.ndarray) -> np.ndarray:
    """Number of long-tail items in each top-k list."""
    items = _cut(recommended, k)
    return np.where(items >= 0, long_tail[np.maximum(items, 0)], False).sum(axis=1).astype(float)


def aplt(recommended: np.ndarray, k: int, long_tail: np.ndarray) -> np.ndarray:
    """Share of long-tail items in each top-k list (ACLT / |L_u|; 0 for an empty list)."""
    lengths = list_lengths(recommended, k).astype(np.float64)
    counts = aclt(recommended, k, long_tail)
    return np.divide(counts, lengths, out=np.zeros_like(counts), where=lengths > 0)


def arp(recommended: np.ndarray, k: int, popularity: np.ndarray) -> np.ndarray:
    """Mean φ of the items in each top-k list (0 for an empty list)."""
    items = _cut(recommended, k)
    phi = np.asarray(popularity, dtype=np.float64)
    sums = np.where(items >= 0, phi[np.maximum(items, 0)], 0.0).sum(axis=1)
    lengths = (items >= 0).sum(axis=1).astype(np.float64)
    return np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0)


# ----- aggregate ----------------------------------------------------------------------------
def recommendation_counts(recommended: np.ndarray, k: int, n_items: int) -> np.ndarray:
    """How many top-k slots each catalog item takes over all lists."""
    items = _cut(recommended, k).ravel()
    return np.bincount(items[items >= 0], minlength=n_items)


def item_coverage(recommended: np.ndarray, k: int, n_items: int) -> tuple[int, float]:
    """Distinct items over all top-k lists, as a count and as a share of the catalog."""
    count = int((recommendation_counts(recommended, k, n_items) > 0).sum())
    return count, count / max(n_items, 1)


def gini(recommended: np.ndarray, k: int, n_items: int) -> float:
    """Gini index G of how top-k slots spread over the catalog (RecBole's convention).

    p(i) = share of all slots taken by item i, never-recommended items included with
    p = 0; G = (1/(n−1)) Σ_j (2j − n − 1) p(i_j) over items sorted by increasing p.
    0 means perfectly even exposure, 1 means one item takes every slot.
    """
    counts = recommendation_counts(recommended, k, n_items).astype(np.float64)
    total = counts.sum()
    if total == 0 or n_items < 2:
        return 0.0
    shares = np.sort(counts / total)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    return float(((2 * ranks - n_items - 1) * shares).sum() / (n_items - 1))


def _parity(rates: np.ndarray) -> float:
    """std(P) / mean(P) with the population std; NaN when both rates are 0 (undefined)."""
    mean = rates.mean()
    return float(rates.std() / mean) if mean > 0 else float("nan")


def pop_rsp(recommended: np.ndarray, k: int, long_tail: np.ndarray, train: sp.csr_matrix) -> float:
    """Ranking-based statistical parity between short head and long tail.

    P(g) = Σ_u |L_u ∩ g| / Σ_u |g ∖ Train_u|, `train` holding the same users' training
    rows; the result is std(P) / mean(P), 0 meaning parity.
    """
    items = _cut(recommended, k)
    real = items >= 0
    in_tail = np.where(real, long_tail[np.maximum(items, 0)], False)
    recommended_tail = in_tail.sum()
    recommended_head = real.sum() - recommended_tail
    train = sp.csr_matrix(train)
    seen_tail = int(long_tail[train.indices].sum())  # binary matrix: one entry per item
    seen_head = train.nnz - seen_tail
    n_users = items.shape[0]
    available_tail = n_users * int(long_tail.sum()) - seen_tail
    available_head = n_users * int((~long_tail).sum()) - seen_head
    rates = np.array(
        [
            recommended_head / available_head if available_head > 0 else 0.0,
            recommended_tail / available_tail if available_tail > 0 else 0.0,
        ]
    )
    return _parity(rates)


def pop_reo(
    hits: np.ndarray,
    recommended: np.ndarray,
    k: int,
    long_tail: np.ndarray,
    relevant: sp.csr_matrix,
) -> float:
    """Ranking-based equal opportunity: PopRSP counting only relevant items.

    P(g) = Σ_u |L_u ∩ g ∩ Rel_u| / Σ_u |g ∩ Rel_u|; std(P) / mean(P).
    """
    items = _cut(recommended, k)
    found = _cut(hits, k)
    in_tail = np.where(items >= 0, long_tail[np.maximum(items, 0)], False)
    found_tail = (found & in_tail).sum()
    found_head = found.sum() - found_tail
    relevant = sp.csr_matrix(relevant)
    relevant_tail = int(long_tail[relevant.indices].sum())
    relevant_head = relevant.nnz - relevant_tail
    rates = np.array(
        [
            found_head / relevant_head if relevant_head > 0 else 0.0,
            found_tail / relevant_tail if relevant_tail > 0 else 0.0,
        ]
    )
    return _parity(rates)
