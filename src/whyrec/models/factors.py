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
        return self.scores_from_factors(self.user_factors(histories), items)

    def scores_from_factors(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores read from given user vectors (an edited one scores the same way)."""
        users = np.asarray(users, dtype=np.float32)
        factors, bias = np.asarray(self.item_factors_), self.item_bias()
        if items is None:  # no fancy indexing: a 1M-item table is not copied per request
            scores = users @ factors.T
            inactive = self._inactive_mask()
        else:
            wanted = np.asarray(items, dtype=np.int64)
            scores = users @ factors[wanted].T
            inactive = self._inactive_mask()[wanted]
        if bias is not None:
            scores += np.asarray(bias)[None, :] if items is None else np.asarray(bias)[wanted]
        scores = scores.astype(np.float32, copy=False)
        scores[:, inactive] = -np.inf
        return scores

    def _inactive_mask(self) -> np.ndarray:
        """Items never seen in training (cached until `active_` is replaced)."""
        cached = self.__dict__.get("_inactive_cache")
        if cached is None or cached[0] is not self.active_:
            mask = np.ones(self.n_items_, dtype=bool)
            mask[np.asarray(self.active_)] = False
            cached = (self.active_, mask)
            self._inactive_cache = cached
        return cached[1]

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
