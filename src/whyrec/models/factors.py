"""The common shape of matrix-factorisation models (iALS, BPR, Rel-MF).

Each model folds a history into a user vector its own way (`user_factors`); scoring is
then the same dot product with the item factors of items seen in training, plus an
optional item bias, and items never seen in training cannot be scored.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from whyrec.models.base import Histories, Recommender


class FactorModel(Recommender):
    """Base of models scoring by user factors · item factors (+ item bias)."""

    @abstractmethod
    def user_factors(self, histories: Histories) -> np.ndarray:
        """One user vector per history."""

    def item_bias(self) -> np.ndarray | None:
        """Per-item bias added to every score, or None."""
        return None

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        scores = self.scores_from_factors(self.user_factors(histories))
        return scores if items is None else scores[:, np.asarray(items)]

    def scores_from_factors(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item read from given user vectors (an edited one scores the same way)."""
        users = np.asarray(users, dtype=np.float32)
        active_scores = users @ np.asarray(self.item_factors_)[self.active_].T
        bias = self.item_bias()
        if bias is not None:
            active_scores += np.asarray(bias)[self.active_][None, :]
        scores = np.full((users.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        scores[:, self.active_] = active_scores
        return scores
