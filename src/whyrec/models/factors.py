"""The common shape of matrix-factorisation models (iALS, BPR, Rel-MF).

Each model folds a history into a user vector its own way (`user_factors`); scoring is
then the same dot product with the item factors of items seen in training, plus an
optional item bias, and items never seen in training cannot be scored.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from whyrec.models.base import Histories, Recommender

if TYPE_CHECKING:
    from whyrec.retrieval import EmbeddingSpace


class FactorModel(Recommender):
    """Base of models scoring by user factors · item factors (+ item bias)."""

    @abstractmethod
    def user_factors(self, histories: Histories) -> np.ndarray:
        """One user vector per history."""

    def item_bias(self) -> np.ndarray | None:
        """Per-item bias added to every score, or None."""
        return None

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        users = self.user_factors(histories)
        wanted = np.arange(self.n_items_) if items is None else np.asarray(items, dtype=np.int64)
        scores = users @ np.asarray(self.item_factors_)[wanted].T
        bias = self.item_bias()
        if bias is not None:
            scores += np.asarray(bias)[wanted][None, :]
        scores = scores.astype(np.float32, copy=False)
        scores[:, ~self._active_mask()[wanted]] = -np.inf
        return scores

    def _active_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_items_, dtype=bool)
        mask[np.asarray(self.active_)] = True
        return mask

    def embedding_space(self) -> EmbeddingSpace:
        """Trained items' factors (with the bias as one more coordinate when there is one)."""
        from whyrec.retrieval import EmbeddingSpace

        active = np.asarray(self.active_)
        vectors = np.asarray(self.item_factors_, dtype=np.float32)[active]
        bias = self.item_bias()
        if bias is not None:
            vectors = np.hstack([vectors, np.asarray(bias, dtype=np.float32)[active, None]])
        return EmbeddingSpace(np.ascontiguousarray(vectors), active)

    def query_vectors(self, histories: Histories) -> np.ndarray:
        users = np.asarray(self.user_factors(histories), dtype=np.float32)
        if self.item_bias() is not None:
            users = np.hstack([users, np.ones((len(users), 1), dtype=np.float32)])
        return users
