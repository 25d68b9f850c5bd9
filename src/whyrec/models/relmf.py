"""Rel-MF (Saito et al., WSDM 2020): matrix factorisation with a clipped-IPS unbiased loss.

Implicit feedback is missing not at random: popular items are *exposed* more, so an
absent click on them says more than on a rare item. Rel-MF weights the loss of every
(user, item) pair by the inverse of the item's exposure propensity
θ_i = (n_i / max_j n_j)^0.5 (docs/metrics.md), clipped below at M to bound the variance:

    L = mean_{u,i} (Y_ui/θ'_i)·δ⁺(ŷ_ui) + (1 − Y_ui/θ'_i)·δ⁻(ŷ_ui),   θ'_i = max(θ_i, M).

With the squared local losses δ⁺(ŷ) = (1 − ŷ)² and δ⁻(ŷ) = ŷ² (one of the losses the paper
allows), expanding gives L = mean (ŷ_ui − Y_ui/θ'_i)² + const: plain least squares towards
the IPS-reweighted target R_ui = Y_ui/θ'_i over *all* pairs. That is why this
implementation needs no SGD and no torch: alternating least squares with uniform weights
solves each step in closed form,

    U = R V (VᵀV + λI)⁻¹,   V = Rᵀ U (UᵀU + λI)⁻¹,

costing one sparse-dense product per step (R is as sparse as the data). Fold-in of any
history is the same user step, so training users and new histories are scored alike.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from whyrec.data.dataset import Dataset
from whyrec.models.base import Histories, ModelConfig, histories_to_csr
from whyrec.models.factors import FactorModel


class RelMFConfig(ModelConfig):
    factors: int = Field(64, ge=1, description="Latent dimensions.")
    reg: float = Field(
        10.0, ge=0, description="L2 regularization λ (on sums over all pairs, not means)."
    )
    clip: float = Field(
        0.3, gt=0, le=1, description="Propensity clipping threshold M: θ' = max(θ, M)."
    )
    power: float = Field(0.5, gt=0, description="Exponent η of θ_i = (n_i / max n)^η.")
    iterations: int = Field(15, ge=1, description="Alternating least-squares sweeps.")
    seed: int = Field(0, description="Seed of the item-factor initialisation.")


def propensities(counts: np.ndarray, power: float, clip: float) -> np.ndarray:
    """Clipped exposure propensities θ'_i = max((n_i / max n)^η, M)."""
    counts = np.asarray(counts, dtype=np.float64)
    top = counts.max() if len(counts) and counts.max() > 0 else 1.0
    return np.maximum((counts / top) ** power, clip)


def _ridge_step(targets: sp.csr_matrix, fixed: np.ndarray, reg: float) -> np.ndarray:
    """argmin_W ‖targets − W fixedᵀ‖² + reg‖W‖², every pair weighted 1."""
    gram = fixed.T @ fixed + reg * np.eye(fixed.shape[1])
    return np.linalg.solve(gram, np.asarray(targets @ fixed).T).T


class RelMF(FactorModel):
    name = "relmf"
    Config = RelMFConfig

    def fit(self, dataset: Dataset) -> Self:
        cfg = self.config
        matrix = dataset.matrix
        self.n_items_ = dataset.n_items
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        self.inverse_propensity_ = (1.0 / propensities(counts, cfg.power, cfg.clip)).astype(
            np.float32
        )
        targets = sp.csr_matrix(matrix @ sp.diags(self.inverse_propensity_), dtype=np.float64)
        targets_t = targets.T.tocsr()
        rng = np.random.default_rng(cfg.seed)
        items = rng.normal(0.0, 0.01, (self.n_items_, cfg.factors))
        for _ in range(cfg.iterations):
            users = _ridge_step(targets, items, cfg.reg)
            items = _ridge_step(targets_t, users, cfg.reg)
        self.item_factors_ = items.astype(np.float32)
        self.active_ = np.flatnonzero(counts > 0).astype(np.int64)
        return self

    def user_factors(self, histories: Histories) -> np.ndarray:
        """The ALS user step for each history's IPS-reweighted row."""
        matrix = histories_to_csr(histories, self.n_items_)
        targets = sp.csr_matrix(
            matrix @ sp.diags(np.asarray(self.inverse_propensity_)), dtype=np.float64
        )
        items = np.asarray(self.item_factors_, dtype=np.float64)
        return _ridge_step(targets, items, self.config.reg).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "item_factors": self.item_factors_,
            "inverse_propensity": self.inverse_propensity_,
            "active": self.active_,
        }

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors_ = np.asarray(arrays["item_factors"])
        self.inverse_propensity_ = np.asarray(arrays["inverse_propensity"])
        self.active_ = np.asarray(arrays["active"])
