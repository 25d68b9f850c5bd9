"""EASE (Steck, WWW 2019): a closed-form linear item-item model.

B = I − P·diag(1/diag(P)) with P = (XᵀX + λI)⁻¹ and a zero diagonal. A user's score for
item j is Σ_{i ∈ history} B[i, j], so every score splits exactly into the contributions
of the history items: the seed of faithful explanations.

Why it is fast: the Gram matrix is built only over items that occur in the training data,
a band of rows at a time straight into one float32 array (no int64 or sparse copy of the
whole), and inverted in place with LAPACK's Cholesky routines (potrf + potri, the matrix
is symmetric positive definite), never a general inverse. That one n × n float32 array is
the whole peak, so `fit` checks it against the free memory before it starts and refuses
with one line (`ResourceError`) instead of being killed by the kernel after a long wait;
SANSA (`whyrec.models.sansa`) is the sparse model for catalogs that size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.linalg import lapack

from whyrec.data.dataset import Dataset
from whyrec.errors import WhyrecError
from whyrec.models import memory
from whyrec.models.base import ModelConfig
from whyrec.models.item_item import ItemItemModel

GRAM_BAND_ENTRIES = 2**22
"""Gram entries computed per band (rows × items): bounds the sparse band to ~50 MB."""
BAND_BYTES_PER_ENTRY = 12
"""A band's sparse product: float32 values, int32 indices and scipy's work arrays."""


class EASEConfig(ModelConfig):
    reg: float = Field(250.0, gt=0, description="L2 regularization λ added to the Gram diagonal.")


def peak_bytes(n_items: int) -> int:
    """EASE's peak memory above the loaded data: the n × n float32 Gram, inverted in place.

    Plus one sparse Gram band (at most `GRAM_BAND_ENTRIES` entries) and 5% for LAPACK's
    work space and the allocator; checked against the measured peak (VmHWM) in
    tests/test_sansa.py.
    """
    band = BAND_BYTES_PER_ENTRY * min(GRAM_BAND_ENTRIES, n_items * n_items)
    return int(1.05 * 4 * n_items * n_items) + band


def check_memory(n_items: int) -> None:
    """Refuse, in one line, a fit that would not fit in the free memory."""
    memory.require(
        peak_bytes(n_items),
        f"EASE needs about {memory.gigabytes(peak_bytes(n_items))} for {n_items:,} items",
        "use `--model sansa` or `--kcore`",
    )


def dense_gram(matrix: sp.csr_matrix, reg: float) -> np.ndarray:
    """XᵀX + λI as one C-ordered float32 array, filled a band of rows at a time.

    `(X.T @ X).toarray()` would hold the whole sparse product (for a dense-ish Gram, twice
    the dense array) and, for an integer X, an int64 copy: three times EASE's real need.
    """
    by_item = sp.csc_matrix(matrix, dtype=np.float32)
    n_items = by_item.shape[1]
    gram = np.zeros((n_items, n_items), dtype=np.float32)  # toarray(out=) adds into it
    band = max(1, GRAM_BAND_ENTRIES // max(n_items, 1))
    for start in range(0, n_items, band):
        stop = min(start + band, n_items)
        (by_item[:, start:stop].T @ by_item).tocsr().toarray(out=gram[start:stop])
    gram[np.diag_indices_from(gram)] += np.float32(reg)
    return gram


def spd_inverse(gram: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite float32 matrix via Cholesky (in place).

    A C-ordered symmetric matrix is its own transpose, so LAPACK gets the Fortran-ordered
    view `gram.T` and works in place; given `gram` itself, f2py would copy all n² floats.
    """
    if gram.flags.c_contiguous:
        gram = gram.T
    factor, info = lapack.spotrf(gram, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise WhyrecError("EASE: the Gram matrix is not positive definite; increase reg")
    inverse, info = lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise WhyrecError("EASE: Cholesky inverse failed; increase reg")
    mirror_upper_triangle(inverse)
    # LAPACK hands back a Fortran-ordered array. The inverse is symmetric, so its
    # transpose is the same matrix as a C-ordered view: row slices and sparse @ dense
    # products then run without copying 400 MB per call.
    return inverse.T


def mirror_upper_triangle(matrix: np.ndarray, block: int = 1024) -> None:
    """Copy the upper triangle onto the lower one in place, a band of rows at a time.

    potri fills only the upper triangle; index arrays or `np.triu` copies for a 10k-item
    matrix would cost more memory than the matrix itself, a band costs n × block.
    """
    n = matrix.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        matrix[start:stop, :start] = matrix[:start, start:stop].T
        square = matrix[start:stop, start:stop]
        lower = np.tril_indices(stop - start, k=-1)
        square[lower] = square.T[lower]


def ease_weights(matrix: sp.csr_matrix, reg: float) -> np.ndarray:
    """EASE's item-item weight matrix B for a binary users × items matrix."""
    weights = spd_inverse(dense_gram(matrix, reg))
    diag = np.diag(weights).copy()
    weights /= -diag[np.newaxis, :]
    np.fill_diagonal(weights, 0.0)
    return weights


class EASE(ItemItemModel):
    name = "ease"
    Config = EASEConfig

    def fit(self, dataset: Dataset) -> EASE:
        check_memory(int((dataset.matrix.getnnz(axis=0) > 0).sum()))
        return super().fit(dataset)

    def learn_weights(self, matrix: sp.csr_matrix) -> np.ndarray:
        return ease_weights(matrix, self.config.reg)

    def state(self) -> dict[str, np.ndarray]:
        return {"active": self.active_, "weights": self.weights_}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active_ = np.asarray(arrays["active"])
        # still memory-mapped, but as a plain ndarray view: np.memmap's Python-level
        # __getitem__ added ~50 µs to every contributions() gather
        self.weights_ = np.asarray(arrays["weights"])
        self._build_lookup()
