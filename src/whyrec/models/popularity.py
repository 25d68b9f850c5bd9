"""Most-popular baseline: the same ranking for everyone, by distinct users per item."""

from __future__ import annotations

from typing import Self

import numpy as np

from whyrec.data.dataset import Dataset
from whyrec.models.base import Histories, ModelConfig, Recommender


class PopularityConfig(ModelConfig):
    """Popularity has no hyper-parameters."""


class Popularity(Recommender):
    name = "popularity"
    Config = PopularityConfig

    def fit(self, dataset: Dataset) -> Self:
        self.popularity_ = dataset.item_popularity().astype(np.float32)
        self.n_items_ = dataset.n_items
        return self

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        row = self.popularity_ if items is None else self.popularity_[np.asarray(items)]
        n = histories.shape[0] if hasattr(histories, "shape") else len(histories)
        return np.broadcast_to(row, (n, len(row))).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity_ = np.asarray(arrays["popularity"])
