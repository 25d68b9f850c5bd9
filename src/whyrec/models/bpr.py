"""Bayesian Personalized Ranking matrix factorisation (Rendle et al. 2009) via `implicit`.

Training is implicit's CPU BPR (SGD over sampled (user, positive, negative) triples);
whyrec keeps the item factors and the item biases (implicit stores the bias as the last
item-factor column and a constant 1 in the last user-factor column).

Fold-in choice: a history is scored with the *mean of its items' factors* as the user
factor, plus the item bias. We measured the alternatives on ml-latest-small
(user-temporal split, 64 factors, 100 epochs): the mean fold-in gave nDCG@10 0.128,
the user factors learned during training 0.086, 300 steps of per-user BPR SGD fold-in
0.113 and a ridge least-squares fold-in 0.083. The mean is also deterministic, needs no
sampling, and treats training users and new histories alike.

Reproducibility: implicit's BPR is Hogwild SGD, so only `threads=1` (the default) gives
the same factors for the same seed; more threads train faster but not repeatably.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from pydantic import Field

from whyrec.data.dataset import Dataset
from whyrec.models.base import Histories, ModelConfig, histories_to_csr
from whyrec.models.factors import FactorModel
from whyrec.models.ials import thread_count


class BPRConfig(ModelConfig):
    factors: int = Field(64, ge=1, description="Latent dimensions (plus one bias column).")
    learning_rate: float = Field(0.05, gt=0, description="SGD step size.")
    reg: float = Field(0.01, ge=0, description="L2 regularization of the factors.")
    iterations: int = Field(100, ge=1, description="Epochs over the training interactions.")
    seed: int = Field(0, description="Seed of initialisation and triple sampling.")
    threads: int = Field(
        1, ge=0, description="Training threads; 1 is reproducible, 0 = all cores (faster)."
    )


class BPR(FactorModel):
    name = "bpr"
    Config = BPRConfig

    def fit(self, dataset: Dataset) -> Self:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        cfg = self.config
        with threadpool_limits(limits=1, user_api="blas"):
            model = BayesianPersonalizedRanking(
                factors=cfg.factors,
                learning_rate=cfg.learning_rate,
                regularization=cfg.reg,
                iterations=cfg.iterations,
                random_state=cfg.seed,
                num_threads=thread_count(cfg.threads),
            )
            model.fit(dataset.matrix.astype(np.float32), show_progress=False)
        factors = np.asarray(model.item_factors, dtype=np.float32)
        self.n_items_ = dataset.n_items
        self.item_factors_ = np.ascontiguousarray(factors[:, :-1])
        self.item_bias_ = np.ascontiguousarray(factors[:, -1])
        self.active_ = np.flatnonzero(dataset.matrix.getnnz(axis=0) > 0).astype(np.int64)
        return self

    def user_factors(self, histories: Histories) -> np.ndarray:
        """Mean of the history items' factors (zeros for an empty history)."""
        matrix = histories_to_csr(histories, self.n_items_)
        sums = np.asarray(matrix @ np.asarray(self.item_factors_), dtype=np.float32)
        lengths = np.maximum(np.diff(matrix.indptr), 1).astype(np.float32)
        return sums / lengths[:, None]

    def item_bias(self) -> np.ndarray:
        return self.item_bias_

    def state(self) -> dict[str, np.ndarray]:
        return {
            "item_factors": self.item_factors_,
            "item_bias": self.item_bias_,
            "active": self.active_,
        }

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors_ = np.asarray(arrays["item_factors"])
        self.item_bias_ = np.asarray(arrays["item_bias"])
        self.active_ = np.asarray(arrays["active"])
