"""Item indices for generative recommendation: every item becomes a short tuple of tokens.

The four indexing choices of "How to Index Item IDs for Recommendation Foundation Models"
(Hua et al. 2023) that need no hand-made taxonomy:

- sequential: items numbered in the order they first appear in users' time-ordered
  histories, the number written in base K (items consumed together get nearby numbers);
- collaborative: residual quantization of collaborative item vectors (a truncated SVD of
  the interaction matrix);
- semantic: residual quantization of the sentence encoder's embedding of the item text;
- hybrid (default): residual quantization of both, concatenated (the LC-Rec/TIGER input).

The quantizer is an RQ-VAE (TIGER, LC-Rec): an MLP encoder, `levels` residual codebooks
(k-means initialised, dead codes re-seeded) and an MLP decoder, trained to reconstruct
the item vectors. LC-Rec's uniform semantic mapping is applied at the last level: inside
every shared prefix the items are assigned to distinct last-level codes by an exact
minimum-cost assignment (Hungarian) on their residuals, the hard form of LC-Rec's
Sinkhorn-balanced assignment. Only a prefix with more items than codes needs more than
one round of assignment; the round number is an extra collision token, so no two items
ever share an index.

Items nobody has interacted with get a collaborative vector predicted from their text
(ridge regression fitted on the items that have both), so they are indexed next to the
items they resemble and the generator can reach them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import svds
from torch import nn
from torch.nn import functional

from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset

IndexKind = Literal["hybrid", "semantic", "collaborative", "sequential"]

MIN_CODEBOOK = 2
MAX_CODEBOOK = 256


@dataclass
class ItemIndex:
    """codes[p] is item p's token tuple (levels + collision level when needed)."""

    codes: np.ndarray
    sizes: list[int]
    notes: list[str] = field(default_factory=list)
    shared_before_collision: int = 0
    """Items whose semantic levels (without the collision token) equal another item's."""

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    def utilisation(self) -> list[float]:
        """Share of each level's codebook that at least one item uses."""
        return [
            len(np.unique(self.codes[:, level])) / size for level, size in enumerate(self.sizes)
        ]


def codebook_size(n_items: int, levels: int) -> int:
    """Codes per level so that K^levels leaves room for twice the catalog's items.

    A power of two between MIN_CODEBOOK and MAX_CODEBOOK: each level then splits the
    catalog into about (2n)^(1/levels) groups, e.g. 64 for 10k items and 3 levels.
    """
    wanted = (2 * max(n_items, 1)) ** (1 / levels)
    size = 2 ** math.ceil(math.log2(max(wanted, MIN_CODEBOOK)))
    return int(min(MAX_CODEBOOK, max(MIN_CODEBOOK, size)))


def fit_codebook_size(asked: int | None, n_items: int, levels: int) -> tuple[int, list[str]]:
    """The asked size (or the automatic one), shrunk with a note when the catalog is too
    small for it: a level with more codes than items would leave most codes unused."""
    automatic = codebook_size(n_items, levels)
    if asked is None:
        return automatic, []
    largest = max(MIN_CODEBOOK, n_items)
    if asked > largest:
        return automatic, [
            f"codebook size {asked} is more than the catalog's {n_items} items; "
            f"using {automatic} codes per level instead"
        ]
    return asked, []


def has_text(catalog: Catalog) -> np.ndarray:
    """Items with text beyond a placeholder title (attributes, a description, a real title)."""
    placeholder = {f"Item {i}" for i in catalog.item_ids} | set(catalog.item_ids)
    out = np.array([title not in placeholder for title in catalog.titles], dtype=bool)
    for values in catalog.attributes.values():
        out |= np.array([bool(v) for v in values], dtype=bool)
    if catalog.descriptions:
        out |= np.array([bool(d) for d in catalog.descriptions], dtype=bool)
    return out


def collaborative_vectors(matrix: sp.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """Item vectors from a truncated SVD of the (user-length normalised) interaction matrix.

    Rows are divided by sqrt(history length) so heavy users do not dominate; item vectors
    are V·sqrt(S), whose dot products approximate co-occurrence.
    """
    binary = sp.csr_matrix(matrix, dtype=np.float64)
    binary.data[:] = 1.0
    lengths = np.asarray(binary.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(lengths, 1.0)))
    normalised = scale @ binary
    rank = max(1, min(dim, min(normalised.shape) - 1))
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(min(normalised.shape))
    _, singular, vt = svds(normalised, k=rank, v0=start)
    order = np.argsort(-singular)
    return (vt[order].T * np.sqrt(singular[order])).astype(np.float32)


def predict_from_text(text: np.ndarray, target: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Ridge map text → target fitted on `known` rows, applied to the other rows."""
    out = target.copy()
    if known.all() or known.sum() < 2:
        return out
    x, y = text[known].astype(np.float64), target[known].astype(np.float64)
    penalty = 1.0 * np.trace(x.T @ x) / x.shape[1]
    weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ y)
    out[~known] = (text[~known] @ weights).astype(np.float32)
    return out


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


# ----- the RQ-VAE -----------------------------------------------------------------------
class ResidualQuantizer(nn.Module):
    """MLP encoder → residual codebooks → MLP decoder (an RQ-VAE)."""

    def __init__(self, in_dim: int, latent: int, sizes: list[int]) -> None:
        super().__init__()
        hidden = max(2 * latent, min(256, in_dim))
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, in_dim)
        )
        self.codebooks = nn.ParameterList([nn.Parameter(torch.zeros(k, latent)) for k in sizes])

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(straight-through quantized z, codes per level, codebook + commitment loss)."""
        residual, total = z, torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for book in self.codebooks:
            index = torch.cdist(residual, book).argmin(dim=1)
            chosen = book[index]
            loss = loss + functional.mse_loss(chosen, residual.detach())
            loss = loss + 0.25 * functional.mse_loss(residual, chosen.detach())
            codes.append(index)
            total = total + chosen
            residual = residual - chosen.detach()
        return z + (total - z).detach(), codes, loss


def kmeans(
    points: torch.Tensor, k: int, generator: torch.Generator, steps: int = 20
) -> torch.Tensor:
    """Plain Lloyd iterations from k distinct random points (empty clusters re-seeded)."""
    n = len(points)
    centres = points[torch.randperm(n, generator=generator)[: min(k, n)]].clone()
    if len(centres) < k:  # fewer points than codes: jittered copies
        extra = centres[torch.randint(len(centres), (k - len(centres),), generator=generator)]
        centres = torch.cat([centres, extra + 1e-3 * torch.randn(extra.shape, generator=generator)])
    for _ in range(steps):
        assign = torch.cdist(points, centres).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        empty = torch.nonzero(~filled).flatten()
        if len(empty):
            centres[empty] = points[torch.randint(n, (len(empty),), generator=generator)]
    return centres


def train_quantizer(
    vectors: np.ndarray, sizes: list[int], latent: int, epochs: int, seed: int
) -> ResidualQuantizer:
    """Fit the RQ-VAE on all item vectors at once (catalogs fit in one batch)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    model = ResidualQuantizer(x.shape[1], latent, sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warmup = max(1, epochs // 10)
    for epoch in range(epochs):
        if epoch == warmup:  # k-means on the residuals of an encoder that has started to learn
            with torch.no_grad():
                residual = model.encoder(x)
                for book in model.codebooks:
                    book.copy_(kmeans(residual, len(book), generator))
                    residual = residual - book[torch.cdist(residual, book).argmin(dim=1)]
        z = model.encoder(x)
        if epoch < warmup:  # plain autoencoder until the codebooks are seeded
            loss = functional.mse_loss(model.decoder(z), x)
        else:
            quantized, codes, vq_loss = model.quantize(z)
            loss = functional.mse_loss(model.decoder(quantized), x) + vq_loss
            if epoch % 20 == 0:
                _reseed_dead_codes(model, z.detach(), codes, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def _reseed_dead_codes(
    model: ResidualQuantizer, z: torch.Tensor, codes: list[torch.Tensor], generator: torch.Generator
) -> None:
    """Move unused codes onto random residuals, so every code ends up carrying items."""
    residual = z
    for book, index in zip(model.codebooks, codes, strict=True):
        used = torch.bincount(index, minlength=len(book)) > 0
        dead = torch.nonzero(~used).flatten()
        if len(dead):
            picks = torch.randint(len(residual), (len(dead),), generator=generator)
            book[dead] = residual[picks]
        residual = residual - book[torch.cdist(residual, book).argmin(dim=1)]


@torch.no_grad()
def quantized_codes(model: ResidualQuantizer, vectors: np.ndarray) -> np.ndarray:
    """(n, levels) codes: greedy residual levels, then the uniform mapping at the last one."""
    z = model.encoder(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
    residual = z
    books = list(model.codebooks)
    codes = np.zeros((len(z), len(books) + 1), dtype=np.int64)
    for level, book in enumerate(books[:-1]):
        costs = (torch.cdist(residual, book) ** 2).numpy()
        index = costs.argmin(axis=1)
        if level == len(books) - 2:  # groups the last level must tell apart: at most K each
            index = balanced_codes(codes[:, :level], costs, index, len(books[-1]))
        codes[:, level] = index
        residual = residual - book[torch.from_numpy(index)]
    last = books[-1]
    costs = (torch.cdist(residual, last) ** 2).numpy()
    prefixes = codes[:, : len(books) - 1]
    codes[:, len(books) - 1 :] = uniform_mapping(prefixes, costs)
    return codes


def balanced_codes(
    parents: np.ndarray, costs: np.ndarray, chosen: np.ndarray, capacity: int
) -> np.ndarray:
    """Nearest codes, except that no code holds more than `capacity` items of one parent
    prefix: the items of an over-full code that lose least by moving go to their nearest
    code with room. Together with the last level's assignment this leaves no collisions
    whenever a parent has at most K × capacity items."""
    chosen = chosen.copy()
    groups = _groups(parents)
    n_codes = costs.shape[1]
    for members in groups:
        counts = np.bincount(chosen[members], minlength=n_codes)
        if counts.max() <= capacity or len(members) > capacity * n_codes:
            continue
        for code in np.flatnonzero(counts > capacity).tolist():
            inside = members[chosen[members] == code]
            excess = counts[code] - capacity
            room = counts < capacity
            alternative = np.where(room[None, :], costs[inside], np.inf).min(axis=1)
            movers = inside[np.argsort(alternative - costs[inside, code], kind="stable")]
            for item in movers[:excess].tolist():
                room = counts < capacity
                target = int(np.argmin(np.where(room, costs[item], np.inf)))
                counts[code] -= 1
                counts[target] += 1
                chosen[item] = target
    return chosen


def _groups(prefixes: np.ndarray) -> list[np.ndarray]:
    """Row indices grouped by equal prefix rows (one group when there are no columns)."""
    if prefixes.shape[1] == 0:
        return [np.arange(len(prefixes))]
    _, group = np.unique(prefixes, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(group[order])) + 1)


def uniform_mapping(prefixes: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """(n, 2): last-level code and collision round of each item.

    Inside each group of items with the same prefix, the items take distinct last-level
    codes by a minimum-cost assignment; a group larger than the codebook is assigned in
    rounds (round r gets collision token r).
    """
    out = np.zeros((len(costs), 2), dtype=np.int64)
    for members in _groups(prefixes):
        remaining, round_number = members, 0
        while len(remaining):
            rows, columns = linear_sum_assignment(costs[remaining])
            taken = remaining[rows]
            out[taken, 0] = columns
            out[taken, 1] = round_number
            remaining = np.setdiff1d(remaining, taken, assume_unique=True)
            round_number += 1
    return out


def sequential_codes(dataset: Dataset, size: int, levels: int) -> np.ndarray:
    """Item numbers in order of first appearance in time-ordered histories, in base `size`."""
    order: dict[int, None] = {}
    for history in dataset.histories():
        for item in history.tolist():
            order.setdefault(item, None)
    numbers = np.empty(dataset.n_items, dtype=np.int64)
    seen = np.fromiter(order, dtype=np.int64, count=len(order))
    numbers[seen] = np.arange(len(seen))
    unseen = np.setdiff1d(np.arange(dataset.n_items), seen)
    numbers[unseen] = np.arange(len(seen), len(seen) + len(unseen))
    codes = np.zeros((dataset.n_items, levels + 1), dtype=np.int64)
    rest = numbers.copy()
    for level in range(levels - 1, -1, -1):
        codes[:, level] = rest % size
        rest //= size
    codes[:, levels] = rest  # only non-zero when size**levels < n_items
    return codes


def finish(codes: np.ndarray, sizes: list[int], notes: list[str]) -> ItemIndex:
    """Drop the collision level when no prefix needed it; count shared semantic codes."""
    semantic = codes[:, :-1]
    _, inverse, counts = np.unique(semantic, axis=0, return_inverse=True, return_counts=True)
    shared = int((counts[inverse.ravel()] > 1).sum())
    collisions = codes[:, -1]
    if collisions.max(initial=0) == 0:
        return ItemIndex(semantic.copy(), list(sizes), notes, shared)
    return ItemIndex(codes, [*sizes, int(collisions.max()) + 1], notes, shared)


def build_index(
    dataset: Dataset,
    kind: IndexKind,
    levels: int,
    asked_size: int | None,
    collaborative_dim: int,
    latent: int,
    epochs: int,
    seed: int,
    text_vectors: np.ndarray | None,
) -> ItemIndex:
    """Index every catalog item (cold ones too) the chosen way."""
    size, notes = fit_codebook_size(asked_size, dataset.n_items, levels)
    sizes = [size] * levels
    if kind == "sequential":
        return finish(sequential_codes(dataset, size, levels), sizes, notes)
    parts = []
    if text_vectors is not None and kind in ("semantic", "hybrid"):
        parts.append(unit_rows(np.asarray(text_vectors, dtype=np.float32)))
    if kind in ("collaborative", "hybrid") or text_vectors is None:
        collab = collaborative_vectors(dataset.matrix, collaborative_dim, seed)
        known = dataset.item_popularity() > 0
        if text_vectors is not None:
            collab = predict_from_text(np.asarray(text_vectors), collab, known)
        parts.append(unit_rows(collab))
    vectors = np.hstack(parts)
    quantizer = train_quantizer(vectors, sizes, latent, epochs, seed)
    return finish(quantized_codes(quantizer, vectors), sizes, notes)
