"""A blend of two registered models: alpha·z(first) + (1 − alpha)·z(second).

Scores of different models live on different scales (EASE weights, cosines, logits), so
each model's scores are z-normalised per user over its finite entries before blending;
alpha then means what it says. Where one model cannot score an item (-inf, e.g. an ID
model and a brand-new item) that model contributes its lowest z-score for the user, so the
other model can still rank the item; an item neither model can score stays -inf.

Typical use: `hybrid` of `ease` (strong on warm items) and `text` (cold start). The two
sub-models are saved in subfolders `first/` and `second/` of the hybrid's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import Field, field_validator

from whyrec.data.dataset import Dataset
from whyrec.models.base import Histories, ModelConfig, Recommender


class HybridConfig(ModelConfig):
    first: str = Field("ease", description="Name of the first registered model.")
    first_params: dict[str, Any] = Field(default_factory=dict, description="Its parameters.")
    second: str = Field("text", description="Name of the second registered model.")
    second_params: dict[str, Any] = Field(default_factory=dict, description="Its parameters.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the first model's z-scores.")

    @field_validator("first_params", "second_params", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """The CLI passes `--param first_params={"reg": 100}` as text; read it as JSON."""
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        return value


def zscore_rows(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row z-scores over finite entries, and the finite mask.

    Non-finite entries get the row's minimum z (0 when the row has no finite score).
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    counts = finite.sum(axis=1, keepdims=True)
    safe = np.where(finite, scores, 0.0)
    mean = safe.sum(axis=1, keepdims=True) / np.maximum(counts, 1)
    var = (np.where(finite, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True)
    std = np.sqrt(var / np.maximum(counts, 1))
    z = np.where(finite, (safe - mean) / np.where(std > 0, std, 1.0), np.inf)
    lowest = z.min(axis=1, keepdims=True)
    z = np.where(finite, z, np.where(np.isfinite(lowest), lowest, 0.0))
    return z, finite


class Hybrid(Recommender):
    """Score blend of two models, each z-normalised per user."""

    name = "hybrid"
    Config = HybridConfig
    config: HybridConfig

    def _build_parts(self) -> None:
        from whyrec.models import model_class

        self.first_ = model_class(self.config.first)(**self.config.first_params)
        self.second_ = model_class(self.config.second)(**self.config.second_params)

    def fit(self, dataset: Dataset) -> Self:
        self._build_parts()
        self.first_.fit(dataset)
        self.second_.fit(dataset)
        self.n_items_ = dataset.n_items
        return self

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        first, first_ok = zscore_rows(self.first_.score(histories))
        second, second_ok = zscore_rows(self.second_.score(histories))
        alpha = self.config.alpha
        blended = alpha * first + (1.0 - alpha) * second
        blended[~(first_ok | second_ok)] = -np.inf
        blended = blended.astype(np.float32)
        return blended if items is None else blended[:, np.asarray(items)]

    # ----- persistence ----------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Nothing of its own; the parts are read by `load_parts`."""

    def save(self, directory: Path) -> None:
        super().save(directory)
        self.first_.save(directory / "first")
        self.second_.save(directory / "second")

    def load_parts(self, directory: Path) -> None:
        self.first_ = Recommender.load(directory / "first")
        self.second_ = Recommender.load(directory / "second")
