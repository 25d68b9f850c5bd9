"""Item-based k-nearest-neighbours with shrunk cosine similarity (Sarwar et al. 2001).

sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) · sqrt(|U_j|) + shrink) over the binary training
matrix. The shrinkage term pulls similarities supported by few co-occurrences towards 0,
which matters on sparse data where two rare items sharing one user look "identical".

For every target item j only its `neighbors` most similar items keep a weight, so the
weight matrix W is sparse. A user's score for j is Σ_{i ∈ history} W[i, j]: like EASE the
score is an exact sum over history items, which gives faithful explanations for free.

The similarity is built in column blocks (dense block of XᵀX, normalised, pruned to the
top neighbours, stored sparse) so memory stays at n_items × block instead of n_items².
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from whyrec.models.base import ModelConfig, usable_cores
from whyrec.models.item_item import ItemItemModel

BLOCK_ITEMS = 1024
"""Target items handled at once while building the similarity (bounds peak memory)."""


class ItemKNNConfig(ModelConfig):
    neighbors: int = Field(
        100, ge=1, description="Most similar items kept per target item (neighbourhood size k)."
    )
    shrink: float = Field(
        10.0, ge=0, description="Added to the cosine denominator; damps weakly supported pairs."
    )


def cosine_neighbours(
    matrix: sp.csr_matrix, neighbors: int, shrink: float, workers: int | None = None
) -> sp.csr_matrix:
    """Sparse W (history item × target item) keeping each column's top `neighbors` weights.

    Each block holds the similarities of a band of target items as contiguous rows, so
    the top-k selection runs along memory (8x faster than along a strided column axis).
    Blocks are independent and both kernels (scipy's sparse product, numpy's partition)
    release the GIL, so `workers` threads share them.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    n_items = matrix.shape[1]
    norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel()).astype(np.float32)
    item_rows = matrix.T.tocsr()
    keep = min(neighbors, max(n_items - 1, 1))

    def block(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stop = min(start + BLOCK_ITEMS, n_items)
        counts = item_rows[start:stop] @ matrix  # co-occurrences, sparse: targets × items
        # Normalise the nonzeros only, negated so that partitioning for the smallest
        # values selects the largest similarities (numpy partitions a small kth fastest).
        row_norms = np.repeat(norms[start:stop], np.diff(counts.indptr))
        counts.data /= -(row_norms * norms[counts.indices] + np.float32(shrink) + 1e-12)
        negated = counts.toarray()
        negated[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-similarity
        if keep < n_items:
            top = np.argpartition(negated, keep - 1, axis=1)[:, :keep]
        else:
            top = np.broadcast_to(np.arange(n_items)[None, :], negated.shape)
        values = -np.take_along_axis(negated, top, axis=1)
        positive = values > 0
        target = np.broadcast_to(np.arange(start, stop)[:, None], top.shape)
        return top[positive], target[positive], values[positive]

    starts = range(0, n_items, BLOCK_ITEMS)
    with ThreadPoolExecutor(workers or min(usable_cores(), 4)) as pool:  # blocks are few
        parts = list(pool.map(block, starts))
    rows, cols, vals = (np.concatenate(column) for column in zip(*parts, strict=True))
    weights = sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)
    weights.sort_indices()
    return weights


class ItemKNN(ItemItemModel):
    name = "itemknn"
    Config = ItemKNNConfig

    def learn_weights(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        return cosine_neighbours(matrix, self.config.neighbors, self.config.shrink)

    def state(self) -> dict[str, np.ndarray]:
        weights = self.weights_
        return {
            "active": self.active_,
            "weights_data": weights.data,
            "weights_indices": weights.indices,
            "weights_indptr": weights.indptr,
        }

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active_ = np.asarray(arrays["active"])
        size = len(self.active_)
        self.weights_ = sp.csr_matrix(
            (
                np.asarray(arrays["weights_data"]),
                np.asarray(arrays["weights_indices"]),
                np.asarray(arrays["weights_indptr"]),
            ),
            shape=(size, size),
        )
        self._build_lookup()
