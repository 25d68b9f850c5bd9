"""Steering: change a latent inside the model and rank with the changed vector.

The probe vector v is replaced by the edited reconstruction plus the reconstruction
error, v' = decode(z') + (v − decode(z)), computed as v + (z' − z)·W_dec, so

- with no edit the model is exactly itself (nothing the autoencoder misses is lost), and
- an edit moves v only along the edited latents' decoder directions.

`SteeredModel` has the model's `score(histories, items)` signature, so the shared ranking
code (`whyrec.evaluation.protocol.rank_all`, top-k, filters) works on it unchanged. This is
the Python API for targeted tuning, e.g. damping a popularity concept:

    steered = SteeredModel(probe, sae).ablate(latent)          # or .scale(latent, 0.5)
    scores = steered.score(histories)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from whyrec.interpret.probe import ProbePoint
from whyrec.interpret.sae import SparseAutoencoder


@dataclass
class SteeredModel:
    """A model whose probe vector is edited in the autoencoder's latent space."""

    probe: ProbePoint
    sae: SparseAutoencoder
    scales: dict[int, float] = field(default_factory=dict)
    """latent → factor on its activation where it fires (0 ablates it)."""
    additions: dict[int, float] = field(default_factory=dict)
    """latent → activation added to every vector, firing or not (boosting)."""
    reconstruct_only: bool = False
    """Score from the bare reconstruction (no error term): measures what the codes keep."""

    @property
    def name(self) -> str:
        return self.probe.model_name

    # ----- building edits -------------------------------------------------------------
    def ablate(self, latent: int) -> SteeredModel:
        return self.scale(latent, 0.0)

    def scale(self, latent: int, factor: float) -> SteeredModel:
        latent = self.sae.check_latent(latent)
        return SteeredModel(
            self.probe, self.sae, {**self.scales, latent: float(factor)}, dict(self.additions)
        )

    def boost(self, latent: int, amount: float) -> SteeredModel:
        """Add `amount` of a latent to every vector (a typical top activation is sensible)."""
        latent = self.sae.check_latent(latent)
        return SteeredModel(
            self.probe, self.sae, dict(self.scales), {**self.additions, latent: float(amount)}
        )

    # ----- scoring --------------------------------------------------------------------
    def edit(self, vectors: np.ndarray) -> np.ndarray:
        """The edited probe vectors (exactly `vectors` when there is no edit)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.reconstruct_only:
            codes = self._edited_codes(self.sae.encode(vectors))
            return self.sae.decode(codes).astype(np.float32)
        if not self.scales and not self.additions:
            return vectors
        codes = self.sae.encode(vectors)
        change = self._edited_codes(codes) - codes
        touched = np.flatnonzero(np.abs(change).sum(axis=0) > 0)
        if len(touched) == 0:
            return vectors
        directions = self.sae.directions()[touched]
        return (vectors + change[:, touched] @ directions).astype(np.float32)

    def _edited_codes(self, codes: np.ndarray) -> np.ndarray:
        edited = codes.copy()
        for latent, factor in self.scales.items():
            edited[:, latent] *= factor
        for latent, amount in self.additions.items():
            edited[:, latent] += amount
        return edited

    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.edit(self.probe.vectors(histories))

    def score(self, histories, items: np.ndarray | None = None) -> np.ndarray:
        histories = list(histories)
        scores = self.probe.scores(self.vectors(histories), histories)
        return scores if items is None else scores[:, np.asarray(items)]


def top_lists(model, histories: Sequence[np.ndarray], k: int = 10) -> np.ndarray:
    """Top-k items per history, its own items excluded (the shared tie-breaking rule)."""
    from whyrec.ranking import unseen_top_k

    out = np.empty((len(histories), k), dtype=np.int64)
    for start in range(0, len(histories), 512):
        chunk = list(histories[start : start + 512])
        scores = np.array(model.score(chunk), dtype=np.float32)
        out[start : start + len(chunk)] = unseen_top_k(scores, chunk, k)
    return out
