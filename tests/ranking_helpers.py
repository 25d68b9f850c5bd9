"""A tiny full-ranking evaluator for model tests (the evaluation module lives elsewhere)."""

from __future__ import annotations

import numpy as np

from whyrec.data.splits import Split
from whyrec.models.base import Recommender


def loo_ranks(model: Recommender, parts: Split, items: np.ndarray | None = None) -> np.ndarray:
    """0-based rank of each held-out item among items unseen in training (full ranking).

    `items` restricts the evaluation to test rows whose item is in that set.
    """
    histories = parts.train.histories()
    rows, targets = parts.test.codes
    if items is not None:
        keep = np.isin(targets, items)
        rows, targets = rows[keep], targets[keep]
    scores = model.score([histories[r] for r in rows]).astype(np.float64)
    scores[parts.train.matrix[rows].nonzero()] = -np.inf
    target_scores = scores[np.arange(len(rows)), targets]
    ranks = (scores > target_scores[:, None]).sum(axis=1)
    return np.where(np.isfinite(target_scores), ranks, scores.shape[1])


def hit_rate(ranks: np.ndarray, k: int = 10) -> float:
    return float((ranks < k).mean())


def ndcg(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
