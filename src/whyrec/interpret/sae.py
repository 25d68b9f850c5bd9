"""A TopK sparse autoencoder (Gao et al. 2024, as used by RecSAE) in PyTorch.

    z = ReLU(TopK(W_enc · (x̃ − b_pre) + b_enc)),   x̂̃ = zᵀ W_dec + b_pre,

where x̃ is the probe vector centred and scaled to unit mean squared norm (so learning
rates do not depend on the model's scale) and only the k largest pre-activations survive:
sparsity is exact, with no L1 penalty shrinking the codes. Decoder rows are kept at unit
norm after every step (and the gradient along each row is removed first), so a latent's
activation *is* its contribution's size. Latents that have not fired for `dead_after`
training vectors are revived by the auxiliary loss (AuxK): the top `aux_k` dead latents
must reconstruct what the live ones missed (in the main loss's units). Reconstruction is
measured as the fraction of variance unexplained, FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖².
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from whyrec.errors import BundleError, WhyrecError
from whyrec.torch_utils import limit_threads, load_arrays_into, seed_everything, state_to_arrays


class SAEConfig(BaseModel):
    """Hyper-parameters of the autoencoder; defaults fit ml-latest-small in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latents: int = Field(1024, ge=2, description="Dictionary size (number of latents).")
    k: int = Field(8, ge=1, description="Active latents per vector (TopK).")
    epochs: int = Field(40, ge=1, description="Passes over the training vectors.")
    batch_size: int = Field(256, ge=2, description="Vectors per step.")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate.")
    aux_k: int | None = Field(
        None, ge=1, description="Dead latents used by the auxiliary loss (default 4·k)."
    )
    aux_coef: float = Field(1 / 32, ge=0, description="Weight of the auxiliary loss.")
    dead_after: int | None = Field(
        None,
        ge=1,
        description="Training vectors without firing before a latent counts as dead "
        "(default: one epoch; shorter spans mistake rare latents for dead ones).",
    )
    seed: int = Field(0, description="Seed of initialisation and batch order.")


class TopKAutoencoder(nn.Module):
    """The network; inputs are already normalised (see `SparseAutoencoder`)."""

    def __init__(self, dim: int, latents: int, k: int) -> None:
        super().__init__()
        if k > latents:
            raise WhyrecError(f"k ({k}) cannot exceed the number of latents ({latents})")
        self.k = k
        decoder = torch.randn(latents, dim)
        decoder = decoder / decoder.norm(dim=1, keepdim=True)
        self.decoder = nn.Parameter(decoder)
        # Tied initialisation: the encoder starts as the decoder's transpose, which
        # gives every latent a live direction from the first step.
        self.encoder = nn.Parameter(decoder.T.clone())
        self.encoder_bias = nn.Parameter(torch.zeros(latents))
        self.pre_bias = nn.Parameter(torch.zeros(dim))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.pre_bias) @ self.encoder + self.encoder_bias

    def sparse_codes(self, pre: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Keep the k largest pre-activations, ReLU them, zero the rest."""
        values, indices = pre.topk(k or self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.decoder + self.pre_bias

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.decoder.div_(self.decoder.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the gradient component that would only change a decoder row's length."""
        if self.decoder.grad is None:
            return
        along = (self.decoder.grad * self.decoder).sum(dim=1, keepdim=True)
        self.decoder.grad.sub_(along * self.decoder)


def fraction_of_variance_unexplained(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Σ‖x − x̂‖² / Σ‖x − x̄‖² (0: perfect; 1: no better than the mean vector)."""
    x = np.asarray(x, dtype=np.float64)
    residual = ((x - np.asarray(reconstruction, dtype=np.float64)) ** 2).sum()
    spread = ((x - x.mean(axis=0)) ** 2).sum()
    return float(residual / spread) if spread > 0 else 0.0


class SparseAutoencoder:
    """TopK sparse autoencoder over probe vectors: fit, encode, decode, save and load.

    Works in the probe's own space: `encode` takes raw vectors, `decode` returns raw
    vectors, and `direction(latent)` is what one unit of a latent adds to a raw vector.
    """

    def __init__(self, config: SAEConfig | None = None, **params) -> None:
        self.config = config or SAEConfig(**params)
        self.history_: list[dict[str, float]] = []

    # ----- training -------------------------------------------------------------------
    def fit(
        self,
        vectors: np.ndarray,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> SparseAutoencoder:
        """Train on (n, dim) vectors; `on_epoch(epoch, stats)` reports progress."""
        limit_threads()
        generator = seed_everything(self.config.seed)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) < 2:
            raise WhyrecError("the autoencoder needs a matrix of at least two vectors")
        cfg = self.config
        self.dim_ = vectors.shape[1]
        self.mean_ = vectors.mean(axis=0)
        spread = float(np.sqrt(((vectors - self.mean_) ** 2).sum(axis=1).mean()))
        self.scale_ = spread if spread > 0 else 1.0
        self.network_ = TopKAutoencoder(self.dim_, cfg.latents, cfg.k)
        data = torch.from_numpy(self._normalise(vectors))
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=cfg.lr)
        aux_k = min(cfg.aux_k or 4 * cfg.k, cfg.latents)
        since_fired = torch.zeros(cfg.latents, dtype=torch.long)
        dead_after = cfg.dead_after or len(data)
        self.history_ = []
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(data), generator=generator)
            totals = {"fvu": 0.0, "aux": 0.0}
            residual_sum, spread_sum = 0.0, 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = data[order[start : start + cfg.batch_size]]
                if len(batch) < 2:
                    continue
                pre = self.network_.pre_activations(batch)
                codes = self.network_.sparse_codes(pre)
                reconstruction = self.network_.decode(codes)
                error = batch - reconstruction
                variance = (batch - batch.mean(dim=0)).pow(2).sum().clamp_min(1e-8)
                loss = error.pow(2).sum() / variance
                fired = (codes > 0).any(dim=0)
                since_fired = torch.where(fired, 0, since_fired + len(batch))
                dead = since_fired > dead_after
                aux = torch.zeros(())
                if cfg.aux_coef > 0 and bool(dead.any()):
                    aux = self._aux_loss(batch, dead, error.detach(), aux_k, variance.detach())
                    loss = loss + cfg.aux_coef * aux
                optimizer.zero_grad()
                loss.backward()
                self.network_.remove_parallel_gradient()
                optimizer.step()
                self.network_.normalise_decoder()
                residual_sum += float(error.detach().pow(2).sum())
                spread_sum += float(variance)
                totals["aux"] += float(aux.detach())
            stats = {
                "epoch": epoch + 1,
                "fvu": residual_sum / max(spread_sum, 1e-12),
                "dead_fraction": float(dead.float().mean()),
                "aux_loss": totals["aux"],
            }
            self.history_.append(stats)
            if on_epoch is not None:
                on_epoch(epoch + 1, stats)
        self.network_.eval()
        return self

    def _aux_loss(
        self,
        batch: torch.Tensor,
        dead: torch.Tensor,
        error: torch.Tensor,
        aux_k: int,
        variance: torch.Tensor,
    ) -> torch.Tensor:
        """How well the top dead latents reconstruct the live latents' residual.

        Only the dead latents' directions learn from it (encoder columns, decoder rows):
        moving the shared pre-encoder bias, or raising a dead latent's bias until it fires
        on everything, revives a few latents by killing others.
        """
        network = self.network_
        pre = (batch - network.pre_bias.detach()) @ network.encoder + network.encoder_bias.detach()
        dead_pre = pre.masked_fill(~dead[None, :], -math.inf)
        values, indices = dead_pre.topk(min(aux_k, int(dead.sum())), dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
        guess = codes @ network.decoder
        # Same units as the main loss (share of the batch's variance), as in Gao et al.
        return (error - guess).pow(2).sum() / variance

    # ----- use ------------------------------------------------------------------------
    def _normalise(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, dtype=np.float32) - self.mean_) / self.scale_).astype(
            np.float32
        )

    @property
    def latents(self) -> int:
        return self.config.latents

    @property
    def k(self) -> int:
        return self.config.k

    @torch.no_grad()
    def encode(self, vectors: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n, latents) sparse codes (at most k non-zeros per row) of raw probe vectors."""
        out = np.zeros((len(vectors), self.latents), dtype=np.float32)
        normalised = self._normalise(vectors)
        for start in range(0, len(vectors), batch_size):
            chunk = torch.from_numpy(normalised[start : start + batch_size])
            codes = self.network_.sparse_codes(self.network_.pre_activations(chunk))
            out[start : start + batch_size] = codes.numpy()
        return out

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Raw probe vectors reconstructed from codes."""
        decoded = self.network_.decode(torch.from_numpy(np.asarray(codes, dtype=np.float32)))
        return decoded.numpy() * self.scale_ + self.mean_

    def reconstruct(self, vectors: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(vectors))

    def directions(self) -> np.ndarray:
        """(latents, dim): what one unit of each latent adds to a raw probe vector."""
        return self.network_.decoder.detach().numpy() * self.scale_

    def fvu(self, vectors: np.ndarray) -> float:
        return fraction_of_variance_unexplained(vectors, self.reconstruct(vectors))

    def check_latent(self, latent: int) -> int:
        """The latent id if it exists, else a clear error."""
        if not 0 <= int(latent) < self.latents:
            raise WhyrecError(
                f"unknown latent {latent}: the autoencoder has {self.latents} latents "
                f"(0–{self.latents - 1})"
            )
        return int(latent)

    # ----- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Config and normalisation as JSON, weights as .npy (no pickle)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean_, **state_to_arrays(self.network_, "net__")}
        for key, array in arrays.items():
            np.save(directory / f"{key}.npy", array, allow_pickle=False)
        meta = {
            "config": self.config.model_dump(),
            "dim": self.dim_,
            "scale": self.scale_,
            "history": self.history_,
            "arrays": sorted(arrays),
        }
        (directory / "sae.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> SparseAutoencoder:
        directory = Path(directory)
        try:
            meta = json.loads((directory / "sae.json").read_text())
            arrays = {
                key: np.load(directory / f"{key}.npy", allow_pickle=False) for key in meta["arrays"]
            }
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"cannot read the autoencoder in {directory}: {exc}") from None
        sae = cls(SAEConfig(**meta["config"]))
        sae.dim_, sae.scale_, sae.history_ = meta["dim"], meta["scale"], meta["history"]
        sae.mean_ = arrays["mean"].astype(np.float32)
        sae.network_ = TopKAutoencoder(sae.dim_, sae.latents, sae.k)
        load_arrays_into(sae.network_, arrays, "net__")
        sae.network_.eval()
        return sae
