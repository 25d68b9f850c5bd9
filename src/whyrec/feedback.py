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

Only positive feedback joins a history: a like, an interaction, or a rating at or above
the bundle's positive threshold (`positive_threshold`). A dislike or a low rating marks
the item as seen (never recommended again) and is never cited as something the user
liked.
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


def positive_threshold(min_rating: float | None, ratings: np.ndarray | None) -> float | None:
    """The rating from which feedback counts as liked.

    The bundle's `--min-rating` when it was trained with one (its training data holds
    only such ratings as positives); else the middle of the rating scale seen in
    training (2.75 for 0.5–5 stars, 3 for 1–5); None when training had no ratings, and
    then every rating counts as liked, as every training interaction did.
    """
    if min_rating is not None:
        return float(min_rating)
    if ratings is None:
        return None
    finite = ratings[np.isfinite(ratings)]
    if len(finite) == 0:
        return None
    return float(finite.min() + finite.max()) / 2


def is_positive(kind: str, rating: float | None, threshold: float | None) -> bool:
    """Whether one feedback event is evidence that the user liked the item."""
    if kind == "dislike":
        return False
    if kind == "like" or rating is None or threshold is None:
        return True
    return rating >= threshold


@dataclass
class FeedbackLog:
    """Feedback received since training, per user, in arrival order (kept in memory).

    `items` are positives (they join the history); `seen` are items the user met but
    did not like (disliked, or rated below the threshold): excluded, never cited."""

    items: dict[str, list[int]] = field(default_factory=dict)
    times: dict[str, list[int]] = field(default_factory=dict)
    seen: dict[str, list[int]] = field(default_factory=dict)

    def add_seen(self, user_id: str, positions: np.ndarray) -> None:
        self.seen.setdefault(user_id, []).extend(int(p) for p in positions)

    def seen_of(self, user_id: str | None) -> np.ndarray:
        return np.asarray(self.seen.get(str(user_id), []) if user_id else [], dtype=np.int64)

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
