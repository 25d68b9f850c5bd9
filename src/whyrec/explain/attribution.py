"""Which history items drove a score, and how much: exact when the model allows, else occlusion.

Linear item-item models (EASE, ItemKNN) split a score exactly into per-history-item
terms (`Recommender.contributions`). For any other model we measure the same thing by
leave-one-out occlusion: score the history with each item removed and report the drop.
All occluded histories go to the model as rows of ONE `score` call, so explaining costs
one batched forward pass, not one per history item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whyrec.models.base import Recommender

EXACT = "exact"
OCCLUSION = "occlusion"
GENERATION_PATH = "generation path"
"""Generative models: history items weighted by how much of the item's generated index
(its path through the index clusters) they share (`generation_path_weights`)."""


@dataclass(frozen=True)
class Attribution:
    """Per-history-item weights for some target items.

    `weights[t, h]` is history item h's contribution to target t's score (exact) or the
    drop of that score when h is removed (occlusion); `method` says which.
    """

    history: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    method: str

    def shares(self) -> np.ndarray:
        """Weights as shares of each row's total (see `shares_of`)."""
        return shares_of(self.weights)


def shares_of(weights: np.ndarray) -> np.ndarray:
    """Each weight as a share of the total when the total is positive (shares then sum to 1),
    else of the total magnitude, so the sign always says up or down.

    A 2-D array is taken row by row (one row per explained item, all rows at once).
    """
    weights = np.asarray(weights, dtype=np.float64)
    totals = weights.sum(axis=-1, keepdims=True)
    magnitudes = np.abs(weights).sum(axis=-1, keepdims=True)
    scale = np.where(totals > 0, totals, magnitudes)
    return np.divide(weights, scale, out=np.zeros_like(weights), where=scale > 0)


def occluded_histories(history: np.ndarray) -> list[np.ndarray]:
    """The history without item 0, without item 1, ...: time order kept, built without a loop
    over items (a mask over a broadcast copy)."""
    history = np.asarray(history, dtype=np.int64)
    n = len(history)
    if n == 0:
        return []
    keep = ~np.eye(n, dtype=bool)
    rows = np.broadcast_to(history, (n, n))[keep].reshape(n, n - 1)
    return list(rows)


def occlusion_weights(model: Recommender, history: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Score drop of each item when each history item is left out: shape (len(items), len(history)).

    One `model.score` call over len(history) + 1 rows (the full history first). A drop is 0
    where the model cannot score the item at all (-inf in both).
    """
    history = np.asarray(history, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if len(history) == 0 or len(items) == 0:
        return np.zeros((len(items), len(history)), dtype=np.float64)
    batch = [history, *occluded_histories(history)]
    scores = np.asarray(model.score(batch, items), dtype=np.float64)
    full, occluded = scores[0], scores[1:]
    with np.errstate(invalid="ignore"):
        drops = full[np.newaxis, :] - occluded
    drops[~np.isfinite(drops)] = 0.0
    return drops.T


def attribute(model: Recommender, history: np.ndarray, items: np.ndarray) -> Attribution:
    """Exact contributions when the model has them, the generation path for a model that
    generates item indices, else leave-one-out occlusion."""
    history = np.asarray(history, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    exact = model.contributions(history, items) if len(history) else None
    if exact is not None:
        return Attribution(history, items, np.asarray(exact, dtype=np.float64), EXACT)
    path_weights = getattr(model, "generation_path_weights", None)
    if path_weights is not None:
        weights = np.asarray(path_weights(history, items), dtype=np.float64)
        return Attribution(history, items, weights, GENERATION_PATH)
    return Attribution(history, items, occlusion_weights(model, history, items), OCCLUSION)
