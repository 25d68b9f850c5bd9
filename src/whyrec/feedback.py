"""Incremental updates: new feedback changes a user's recommendations without a retrain.

Every whyrec model scores a *history*, so folding feedback in means appending it to the
user's history and recomputing what the model derives from a history:

- iALS (and the other factor models) solve the user's vector from the history with the
  item factors fixed; for iALS that is exactly the ALS user step, the least-squares
  problem implicit's conjugate-gradient / Cholesky solvers minimise
  (`IALS.user_factors`), so a folded-in user gets the vector a retrain with frozen item
  factors would give;
- item-based models (EASE, ItemKNN) and the text model have no per-user state beyond
  the history itself: appending is the whole update.

Item factors and item-item weights change only at the next full retrain; the feedback
kept here (`FeedbackLog.frame()`) is what to append to the training data for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from whyrec.models.base import Recommender


@dataclass(frozen=True)
class FoldIn:
    """What one fold-in did: the user's new history and, for vector models, their vector."""

    user_id: str
    added: np.ndarray
    history: np.ndarray
    vector: np.ndarray | None
    method: str


@dataclass
class FeedbackLog:
    """Feedback received since training, per user, in arrival order (kept in memory)."""

    items: dict[str, list[int]] = field(default_factory=dict)
    times: dict[str, list[int]] = field(default_factory=dict)

    def add(self, user_id: str, positions: np.ndarray, timestamp: int | None = None) -> None:
        stamp = int(time.time()) if timestamp is None else int(timestamp)
        self.items.setdefault(user_id, []).extend(int(p) for p in positions)
        self.times.setdefault(user_id, []).extend([stamp] * len(positions))

    def of(self, user_id: str) -> np.ndarray:
        return np.asarray(self.items.get(user_id, []), dtype=np.int64)

    def frame(self, item_ids: list[str]) -> pd.DataFrame:
        """The feedback as canonical interactions (no ratings), for the next retrain."""
        users = [u for u, items in self.items.items() for _ in items]
        positions = [p for items in self.items.values() for p in items]
        return pd.DataFrame(
            {
                "user_id": users,
                "item_id": [item_ids[p] for p in positions],
                "rating": np.full(len(users), np.nan, dtype=np.float32),
                "timestamp": [t for stamps in self.times.values() for t in stamps],
            }
        )


def user_vector(model: Recommender, history: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The model's vector for a history and how it was obtained (None: the history is it)."""
    scores_by_vector = type(model).query_vectors is not Recommender.query_vectors
    if not scores_by_vector or len(history) == 0:
        return None, "history append"
    vector = np.asarray(model.query_vectors([history])[0], dtype=np.float32)
    method = "least-squares fold-in" if model.name == "ials" else "recomputed from history"
    return vector, method
