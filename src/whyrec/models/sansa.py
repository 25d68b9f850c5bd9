"""SANSA (Spišák et al., RecSys 2023): EASE's closed form, sparse, for million-item catalogs.

EASE needs the dense inverse P = (XᵀX + λI)⁻¹: n² floats. SANSA factors the (sparse) item
Gram matrix approximately, P ≈ Kᵀ·D⁻¹·K with K a sparse approximate inverse of the
incomplete-Cholesky factor, and keeps every factor at a target density. The weight matrix
B = I − P·diag(1/diag(P)) of EASE then becomes a product of two sparse factors,

    B = E @ F − diag(E @ F),   E = Kᵀ,   F = D⁻¹·K·diag(−1/diag(P)),

so memory and fit time grow with items × `weights_per_item`, not with items². A user's
score for j is still Σ_{i ∈ history} B[i, j] (with the zero diagonal EASE has), so every
score splits exactly into history contributions, E[i] · F[:, j], and explanations,
fold-in, serving and evaluation are the item-item path of EASE.

The factorisation and the approximate inverse come from the authors' `sansa` package
(scikit-sparse/SuiteSparse and numba underneath); here is only the glue: the Gram matrix
built in bands under a memory check, the zero diagonal, saving, scoring and explaining.
"""

from __future__ import annotations

import gc
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field, model_validator

from whyrec.models import memory
from whyrec.models.base import ModelConfig
from whyrec.models.ease import EASEConfig
from whyrec.models.item_item import ItemItemModel
from whyrec.sparse_rows import dense_product, distinct, place_in_run

PACKAGE_SHIFT = 1e-4
"""With `objective="ease"` λ is already on the Gram; the package adds this to the scaled
diagonal (≤ 1) only to keep its incomplete Cholesky clear of breakdown."""
GRAM_BAND_ENTRIES = 2**24
"""Items × band rows of the Gram computed at once (bounds the band's own product)."""
GRAM_BYTES_PER_ENTRY = 48
"""Peak bytes per stored Gram entry during a fit: our float32/int32 CSR (8), the package's
working copy and its row/column permutations with int64 indices (3 × 12), scaling."""
FACTOR_BYTES_PER_ENTRY = 80
"""Peak bytes per target factor entry: L, its preallocated ICF arrays (12), the Schultz
guess, the approximate inverse, its residual and the two saved factors."""


PACKAGE_REG = 10.0
"""The package's λ on its norm-scaled Gram (its model, `weights="factors"`)."""
OUTGOING_CAP = 50.0
"""Default `outgoing_cap` of refit, in multiples of `weights_per_item` (so it scales with the
model's own density): chosen on validation users of synthetic million-item catalogs, where
it cut the recommend tail and left nDCG@10 unchanged (docs/sansa.md). It cannot bind on a
catalog of fewer than 50 × `weights_per_item` items (ml-latest-small at 200 weights an
item): a row of W has at most one weight per other item."""
REFIT_REG = 50.0
"""λ of `weights="refit"` on the raw Gram: `whyrec tune --grid reg=50,250,1000` on the
validation splits of ml-latest-small chose 250 (user-temporal) and 50 (loo); 50 has the
higher mean of the two relative to each split's best (0.99 against 0.96), docs/sansa.md."""


class SANSAConfig(ModelConfig):
    reg: float | None = Field(
        None,
        gt=0,
        description="L2 regularization λ on the Gram diagonal. Default: 50 on the raw Gram "
        "for weights=refit (validated), EASE's 250 for objective=ease, the package's 10 on "
        "its norm-scaled Gram otherwise.",
    )
    weights_per_item: float = Field(
        200.0,
        gt=0,
        description="Target nonzeros per item in each sparse factor: the target density "
        "times the number of active items (so memory grows linearly with items).",
    )
    factorizer: Literal["icf", "cholmod"] = Field(
        "icf",
        description="icf: incomplete Cholesky at the target density (low memory); cholmod: "
        "exact sparse Cholesky then pruned (more memory, for small dense catalogs).",
    )
    gram_per_item: int = Field(
        0,
        ge=0,
        description="Keep only each item's this many strongest co-occurrences in the Gram "
        "matrix before factoring (0: all). Bounds fit memory on catalogs whose exact Gram "
        "would not fit; an approximation beyond the paper's, measured in docs/sansa.md.",
    )
    inverse_steps: int = Field(
        10, ge=0, description="Fine-tuning steps of the approximate inverse (UMR)."
    )
    weights: Literal["factors", "refit"] = Field(
        "refit",
        description="factors: SANSA's sparse approximate inverse (the paper). refit: not "
        "SANSA's method but local EASE (SLIM with a fixed support): each item's "
        "`weights_per_item` strongest Gram co-occurrences keep a weight, solved exactly by "
        "EASE's normal equations on that support, λ = reg on the raw Gram.",
    )
    outgoing_cap: float | None = Field(
        None,
        ge=0,
        description="refit only: keep at most this many times `weights_per_item` weights "
        "from each item to its targets (its row of W), the largest |w|; 0 keeps all. "
        "Default: 50 for refit (validated; it cannot bind below 50 × weights_per_item "
        "items). A popular item is among nearly every item's neighbours, so its row reaches "
        "most of the catalog and a long history gathered millions of weights per request.",
    )
    objective: Literal["package", "ease"] = Field(
        "package",
        description="ease: EASE's loss (λ on the Gram's diagonal, as `--model ease`); the "
        "package's norm scaling only preconditions the factorisation and is undone. package: "
        "the package's model as published (λ on the norm-scaled Gram, scaling kept).",
    )

    @model_validator(mode="after")
    def _cap_needs_refit(self) -> SANSAConfig:
        if self.outgoing_cap and self.weights != "refit":
            raise ValueError("outgoing_cap applies to weights=refit only (W = E·F otherwise)")
        return self


def outgoing_limit(config: SANSAConfig) -> int | None:
    """Most weights kept in a row of a refit W (None: no cap), from `outgoing_cap`."""
    multiple = OUTGOING_CAP if config.outgoing_cap is None else config.outgoing_cap
    if not multiple or config.weights != "refit":
        return None
    return max(1, math.ceil(multiple * config.weights_per_item))


def regularization(config: SANSAConfig) -> float:
    """λ: the configured one, else the validated `REFIT_REG` for refit, EASE's default for
    `objective=ease` (both on the raw Gram), or the package's on its scaled Gram."""
    if config.reg is not None:
        return config.reg
    if config.weights == "refit":
        return REFIT_REG
    return EASEConfig().reg if config.objective == "ease" else PACKAGE_REG


def _import_sansa():
    """The `sansa` package, without the INFO logging it switches on for the whole process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import sansa

    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("sansa").setLevel(logging.WARNING)
    return sansa


def gram_upper_bound(matrix: sp.csr_matrix) -> int:
    """Most entries XᵀX can have: Σ_u |history_u|², at most items²."""
    lengths = np.diff(matrix.indptr).astype(np.float64)
    return int(min(float(np.square(lengths).sum()), float(matrix.shape[1]) ** 2))


def peak_bytes(gram_entries: int, n_items: int, weights_per_item: float) -> int:
    """Fit memory above the loaded data, from the Gram's entries and the factor target."""
    factor_entries = n_items * min(weights_per_item, n_items)
    return int(GRAM_BYTES_PER_ENTRY * gram_entries + FACTOR_BYTES_PER_ENTRY * factor_entries)


def sparse_gram(matrix: sp.csr_matrix, config: SANSAConfig) -> sp.csr_matrix:
    """XᵀX as float32 CSR, a band of items at a time, stopping before memory runs out.

    Bands are cut so that each one's product has at most `GRAM_BAND_ENTRIES` entries (an
    item's row has at most Σ|history| over its users). With `gram_per_item`, each band keeps
    only its rows' strongest co-occurrences (and the diagonal) before the next is built,
    and the union with the transpose keeps the matrix symmetric. When even the upper
    bound Σ|history|² fits, no check runs; otherwise the estimate is re-checked after each
    band with the entries kept so far, so a catalog whose co-occurrences cannot fit stops
    with one line early, not with an out-of-memory kill.
    """
    by_item = sp.csc_matrix(matrix, dtype=np.float32)
    by_user = sp.csr_matrix(matrix, dtype=np.float32)  # CSR @ CSR: no conversion per band
    n_items = by_item.shape[1]
    keep = config.gram_per_item
    bound = (
        gram_upper_bound(matrix) if not keep else min(gram_upper_bound(matrix), 2 * keep * n_items)
    )
    bound_fits = _fits(peak_bytes(bound, n_items, config.weights_per_item))
    bands, stored = [], 0
    for start, stop in _bands(by_item):
        part = by_item[:, start:stop].T @ by_user
        if keep:
            part = _strongest_per_row(part, keep, start)
        part.sort_indices()
        bands.append(part)
        stored += part.nnz
        if not bound_fits:
            need = peak_bytes(stored * (2 if keep else 1), n_items, config.weights_per_item)
            done = f"{stop / n_items:.0%} of the item co-occurrences"
            memory.require(
                need,
                f"SANSA needs more than {memory.gigabytes(need)} for {n_items:,} items "
                f"({stored:,} co-occurring pairs after {done})",
                "keep fewer with `--param gram_per_item=N`, use `--kcore`, or drop the most "
                "active users",
            )
    gram = sp.vstack(bands, format="csr", dtype=np.float32)
    del bands
    if keep:
        gram = gram.maximum(gram.T.tocsr()).tocsr()
        gram.sort_indices()
    return gram


def _bands(by_item: sp.csc_matrix) -> list[tuple[int, int]]:
    """(start, stop) item ranges whose Gram rows hold at most `GRAM_BAND_ENTRIES` entries."""
    lengths = np.diff(sp.csr_matrix(by_item).indptr).astype(np.float64)
    reach = np.minimum(by_item.T @ lengths, by_item.shape[1])  # bound on each row's entries
    edges, total, start = [], 0.0, 0
    for item, entries in enumerate(reach):
        if total and total + entries > GRAM_BAND_ENTRIES:
            edges.append((start, item))
            start, total = item, 0.0
        total += entries
    edges.append((start, by_item.shape[1]))
    return edges


def _strongest_per_row(part: sp.csr_matrix, keep: int, offset: int) -> sp.csr_matrix:
    """The `keep` largest entries of every row, plus the diagonal (row r is item offset+r)."""
    rows = np.repeat(np.arange(part.shape[0], dtype=np.int64), np.diff(part.indptr))
    return _keep_strongest(
        part, np.where(part.indices == rows + offset, np.inf, part.data), keep + 1
    )


def cap_outgoing(weights: sp.csr_matrix, cap: int) -> sp.csr_matrix:
    """W with each row (an item's weights to its targets) cut to its `cap` largest |w|.

    A popular item is among nearly every item's strongest neighbours, so its row of W
    reaches most of the catalog and one long history gathered ~10⁶ weights at 10⁶ items;
    capped, a request gathers at most |history| × cap. The cut weights are gone from the
    model that is served, so its scores stay exact sums of the weights it explains.
    """
    if len(weights.indptr) < 2 or np.diff(weights.indptr).max() <= cap:
        return weights  # nothing to cut: the same model, not a re-sorted copy
    return _compact(_keep_strongest(weights, np.abs(weights.data), cap))


def _keep_strongest(matrix: sp.csr_matrix, strength: np.ndarray, keep: int) -> sp.csr_matrix:
    """The `keep` entries of every row with the largest non-negative `strength`.

    One stable sort of an int64 key (row, then strength descending): the bits of a
    non-negative float32 order as its value does. Three times faster than a two-key
    lexsort, and it dominates the Gram's build on million-item catalogs.
    """
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), counts)
    weakness = np.int64(0x7FFFFFFF) - np.asarray(strength, dtype=np.float32).view(np.int32)
    order = np.argsort((rows << 32) | weakness, kind="stable")  # by row, strongest first
    rank = np.arange(len(order)) - matrix.indptr[rows]  # sorted rows are the rows: CSR order
    kept = np.zeros(len(order), dtype=bool)
    kept[order[rank < keep]] = True
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[kept], minlength=len(counts)))])
    return sp.csr_matrix((matrix.data[kept], matrix.indices[kept], indptr), shape=matrix.shape)


def _fits(need: int) -> bool:
    free = memory.available_bytes()
    return free is None or need <= free


def sansa_factors(
    matrix: sp.csr_matrix, config: SANSAConfig
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(E, F, diag(E @ F)) for a binary users × items matrix: B = E @ F with that diagonal."""
    sansa = _import_sansa()
    n_items = matrix.shape[1]
    factorizer = (
        sansa.ICFGramianFactorizerConfig()
        if config.factorizer == "icf"
        else sansa.CHOLMODGramianFactorizerConfig()
    )
    ease = config.objective == "ease"
    model = sansa.SANSA(
        sansa.SANSAConfig(
            l2=PACKAGE_SHIFT if ease else regularization(config),
            weight_matrix_density=min(1.0, config.weights_per_item / max(n_items, 1)),
            gramian_factorizer_config=factorizer,
            lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
                scans=1, finetune_steps=config.inverse_steps
            ),
        )
    )
    gram = sparse_gram(matrix, config)
    if ease:  # λ on the raw Gram's diagonal, which is there for every active item
        gram.setdiag(gram.diagonal() + np.float32(regularization(config)))
        scale = _package_scaling(gram) if config.factorizer == "icf" else None
    # The package needs its Gram column-major: handed a CSR matrix, its ICF step transposes
    # it and scipy narrows the int64 indices it just set to int32, which the compiled
    # kernel rejects. The Gram is symmetric, so its CSR arrays are its CSC arrays.
    gram = sp.csc_matrix((gram.data, gram.indices, gram.indptr), shape=gram.shape)
    with warnings.catch_warnings(), _collector_sees_only_new_objects():
        warnings.filterwarnings("ignore", message=".*to CSC format")  # CHOLMOD's CSR → CSC notes
        model.fit(gram, compute_gramian=False)
    del gram
    encoder, decoder = model.weights
    model.weights = (None, None)
    if ease and scale is not None:  # B' = S·B·S⁻¹ back to B: E ← S⁻¹·E, F ← F·S
        encoder = sp.diags(1 / scale).dot(encoder)
        decoder = sp.csr_matrix(decoder).dot(sp.diags(scale))
    encoder, decoder = _compact(encoder), _compact(decoder)
    self_weights = np.asarray(encoder.multiply(decoder.T.tocsr()).sum(axis=1)).ravel()
    return encoder, decoder, self_weights.astype(np.float32)


def _package_scaling(gram: sp.csr_matrix) -> np.ndarray:
    """√‖G_i‖ for each row: the package factors S⁻¹·G·S⁻¹ + shift·I with S this diagonal.

    It does so to keep the incomplete Cholesky stable, but keeps the scaling in its
    weights: its B is S·B_G·S⁻¹, which divides every score of item j by √‖G_j‖ (a
    popularity penalty EASE does not have) and turns λ into λ·‖G_i‖ per item. Undoing it
    gives EASE's model at whatever density the factors are kept.
    """
    squares = gram.multiply(gram).sum(axis=1)
    scale = np.sqrt(np.sqrt(np.asarray(squares, dtype=np.float64).ravel()))
    scale[scale == 0] = 1.0
    return scale


@contextmanager
def _collector_sees_only_new_objects() -> Iterator[None]:
    """Let the package's own `gc.collect()` calls skip every object that existed before.

    The package runs a full collection after each squared-norm and factorisation step
    (about 25 a fit). Each one walks every object the process holds, so inside a large
    process (a test session, a server with torch and an encoder loaded) they took most of
    the fit: `whyrec tune` on a 20-core of ml-latest-small spent half its time in them, and
    a CI run several minutes. Frozen objects are skipped; what the fit creates is still
    collected, and the old objects go back to the collector afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _compact(matrix: sp.spmatrix) -> sp.csr_matrix:
    """float32 CSR with int32 indices when they fit (half the bytes of int64 on disk)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.nnz < 2**31 - 1:
        matrix.indices = matrix.indices.astype(np.int32, copy=False)
        matrix.indptr = matrix.indptr.astype(np.int32, copy=False)
    return matrix


REFIT_BATCH_ENTRIES = 2**22
"""Entries of the k×k systems solved at once (bounds the refit's working memory)."""


REFIT_BATCH_ITEMS = 2048
"""With a pruned Gram, the items other than hubs whose exact co-occurrences one batch
recomputes: a batch takes targets in order until its supports reach this many (their
dense block against the batch's items is at most 2048 × 6144 float32, 50 MB)."""


REFIT_HUB_ITEMS = 4096
"""With a pruned Gram, the support items shared by the most targets ("hubs"): their exact
co-occurrences among themselves are one dense block, computed once (64 MB at most). Each
batch recomputed them before: at 1e6 items × 1e7 interactions popular items sit in the
supports of nearly every batch, and their long columns were multiplied 4,680 times."""


def refit_weights(matrix: sp.csr_matrix, config: SANSAConfig) -> sp.csr_matrix:
    """Local EASE: W[S_j, j] = (G[S_j, S_j] + λI)⁻¹ G[S_j, j] for each item j.

    S_j holds j's `weights_per_item` strongest co-occurrences (never j: the diagonal
    stays zero). That is EASE's closed form with every other weight of column j held at
    zero, i.e. the least-squares fit of item j's column on its neighbours' columns, so
    each weight is exact for its support rather than an approximate inverse's.
    With `gram_per_item` the pruned Gram only picks the supports: the exact co-occurrences
    the systems need are recomputed from the data (`_ExactCooccurrences`), because a
    pruned pair read as 0 makes G[S_j, S_j] indefinite (measured: weights up to 285,
    nDCG@10 near 0). Batches of targets: one k×k lookup of Gram entries and one batched
    solve each; every entry is an exact count, so the batching never changes W.
    """
    gram = sparse_gram(matrix, config)
    n_items = gram.shape[0]
    keep = max(1, min(int(config.weights_per_item), n_items - 1))
    supports = _neighbour_table(gram, keep)
    most_targets = max(1, REFIT_BATCH_ENTRIES // (keep * keep))
    if config.gram_per_item:
        del gram
        exact: _ExactCooccurrences | _StoredGram = _ExactCooccurrences(
            sp.csc_matrix(matrix, dtype=np.float32), supports
        )
        edges = exact.batch_edges(most_targets)
    else:
        exact = _StoredGram(gram)
        edges = [(start, min(start + most_targets, n_items))
                 for start in range(0, n_items, most_targets)]  # fmt: skip
    values = np.zeros(supports.shape, dtype=np.float32)
    for start, stop in edges:
        support, targets = supports[start:stop], np.arange(start, stop)
        missing = support < 0
        filled = np.where(missing, targets[:, None], support)  # any item: zeroed below
        entries = exact.among(np.concatenate([filled.ravel(), targets]))
        systems = entries(filled[:, :, None], filled[:, None, :])
        systems[missing[:, :, None] | missing[:, None, :]] = 0.0
        diagonal = np.where(missing, 1.0, regularization(config))
        systems[:, np.arange(keep), np.arange(keep)] += diagonal
        right = entries(filled, targets[:, None])
        right[missing] = 0.0
        values[start:stop] = np.linalg.solve(systems, right[..., None])[..., 0]
    rows = supports.ravel()
    cols = np.repeat(np.arange(n_items), keep)
    kept = rows >= 0
    return _compact(
        sp.csr_matrix((values.ravel()[kept], (rows[kept], cols[kept])), shape=(n_items, n_items))
    )


Entries = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""G[a, b] (float64, broadcast) for item arrays a and b."""


class _StoredGram:
    """Entries of an exact Gram matrix kept whole (no `gram_per_item`)."""

    def __init__(self, gram: sp.csr_matrix) -> None:
        self.gram, self.keys = gram, _sorted_keys(gram)

    def among(self, items: np.ndarray) -> Entries:
        return lambda rows, cols: _gram_entries(self.gram, self.keys, rows, cols)


class _ExactCooccurrences:
    """Exact XᵀX entries among the items of a batch, recomputed from the data.

    The hubs' block among themselves is computed once; a batch multiplies only the
    columns of its other items, against the columns of all its items.
    """

    def __init__(self, by_item: sp.csc_matrix, supports: np.ndarray) -> None:
        n_items = by_item.shape[1]
        shared = np.bincount(supports[supports >= 0], minlength=n_items)
        hubs = np.sort(np.argsort(-shared, kind="stable")[:REFIT_HUB_ITEMS])
        hubs = hubs[shared[hubs] > 1]  # in one support only: no product to save
        self.by_item, self.supports = by_item, supports
        self.hub_at = np.full(n_items, -1, dtype=np.int64)
        self.hub_at[hubs] = np.arange(len(hubs))
        columns = by_item[:, hubs]
        self.hub_block = (columns.T @ columns).toarray()

    def batch_edges(self, most_targets: int) -> list[tuple[int, int]]:
        """(start, stop) runs of targets whose items other than hubs (the targets and their
        supports) number at most `REFIT_BATCH_ITEMS`, at most `most_targets` long."""
        n_items = len(self.supports)
        edges, start = [], 0
        while start < n_items:
            stop = min(start + most_targets, n_items)
            run = np.column_stack([np.arange(start, stop), self.supports[start:stop]])
            items = run.ravel()
            first_seen = np.unique(np.where(items >= 0, items, n_items), return_index=True)[1]
            first_seen = first_seen[(items[first_seen] >= 0) & (self.hub_at[items[first_seen]] < 0)]
            new_per_target = np.bincount(first_seen // run.shape[1], minlength=len(run))
            fits = np.flatnonzero(np.cumsum(new_per_target) <= REFIT_BATCH_ITEMS)
            stop = start + max(1, len(fits))  # cumsum grows: the fitting prefix
            edges.append((start, stop))
            start = stop
        return edges

    def among(self, items: np.ndarray) -> Entries:
        """G[a, b] for any a, b of `items`."""
        items = distinct(items)
        others = items[self.hub_at[items] < 0]
        local = (self.by_item[:, others].T @ self.by_item[:, items]).toarray()  # others × items

        def entries(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            (row_hub, row_other, row_at), (col_hub, col_other, col_at) = (
                (self.hub_at[side], np.searchsorted(others, side), np.searchsorted(items, side))
                for side in (rows, cols)
            )  # on the unbroadcast sides: k times fewer lookups than on the k×k systems
            swap = row_hub >= 0  # G is symmetric: look a hub row up as its column
            first = np.minimum(np.where(swap, col_other, row_other), len(others) - 1)
            found = local[first, np.where(swap, row_at, col_at)] if len(others) else 0.0
            if len(self.hub_block) == 0:
                return np.asarray(found, dtype=np.float64)
            hubs = self.hub_block[np.maximum(row_hub, 0), np.maximum(col_hub, 0)]
            return np.where(swap & (col_hub >= 0), hubs, found).astype(np.float64)

        return entries


def _sorted_keys(gram: sp.csr_matrix) -> np.ndarray:
    """row·n + column of every stored entry: row-major and sorted, so a binary search finds
    any (row, column)."""
    rows = np.repeat(np.arange(gram.shape[0], dtype=np.int64), np.diff(gram.indptr))
    return rows * gram.shape[0] + gram.indices


def _neighbour_table(gram: sp.csr_matrix, keep: int) -> np.ndarray:
    """Each item's `keep` strongest off-diagonal Gram entries, as an items × keep table of
    columns (sorted, -1 where an item co-occurs with fewer)."""
    strongest = _strongest_per_row(gram, keep, 0)  # the diagonal, then `keep` more
    rows = np.repeat(np.arange(gram.shape[0], dtype=np.int64), np.diff(strongest.indptr))
    off = strongest.indices != rows
    rows, cols = rows[off], strongest.indices[off].astype(np.int64)
    table = np.full((gram.shape[0], keep), -1, dtype=np.int64)
    table[rows, place_in_run(rows)] = cols  # CSR order: rows sorted, columns sorted within
    return table


def _gram_entries(
    gram: sp.csr_matrix, keys: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """G[rows, cols] (broadcast, float64) from the Gram's sorted keys; 0 where absent."""
    wanted = np.broadcast_to(rows, np.broadcast_shapes(rows.shape, cols.shape)) * gram.shape[0]
    wanted = wanted + cols
    place = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[place] == wanted, gram.data[place], 0.0).astype(np.float64)


class SANSA(ItemItemModel):
    name = "sansa"
    Config = SANSAConfig

    def learn_weights(self, matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(E, F) with B = E @ F − diag; a refit W is the pair (W, I) with a zero diagonal,
        so scoring, explaining and saving stay one path."""
        if self.config.weights == "refit":
            weights = refit_weights(matrix, self.config)
            if (cap := outgoing_limit(self.config)) is not None:
                weights = cap_outgoing(weights, cap)
            self.self_weights_ = np.zeros(weights.shape[0], dtype=np.float32)
            return weights, _compact(sp.identity(weights.shape[0], format="csr"))
        encoder, decoder, self.self_weights_ = sansa_factors(matrix, self.config)
        return encoder, decoder

    @property
    def density(self) -> float:
        """Stored weights per items² of both factors together (the size of the model)."""
        encoder, decoder = self.weights_
        return (encoder.nnz + decoder.nnz) / max(1, encoder.shape[0]) ** 2

    def _history_scores(self, matrix: sp.csr_matrix) -> np.ndarray:
        encoder, decoder = self.weights_
        if self.config.weights == "refit":  # F = I, zero diagonal: the history rows of W
            # one compiled pass; scipy's X @ W first took 6x as long (16 ms p99 at 1e6 items)
            return dense_product(matrix, encoder)
        scores = dense_product(sp.csr_matrix(matrix @ encoder), decoder)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        scores[rows, matrix.indices] -= matrix.data * self.self_weights_[matrix.indices]
        return scores

    def _scoring_weights(self) -> sp.csr_matrix:
        return self.weights_[1]

    def _weights_block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """B[rows][:, cols] = E[rows] @ F[:, cols], zero where a row is its own column."""
        encoder, _ = self.weights_
        block = (encoder[rows] @ self._decoder_by_column()[:, cols]).toarray()
        block[rows[:, None] == cols[None, :]] = 0.0
        return block

    def _decoder_by_column(self) -> sp.csc_matrix:
        """A column-major copy of F, made on first explanation for these weights."""
        cached = self.__dict__.get("_by_column")
        if cached is None or cached[0] is not self.weights_:
            cached = (self.weights_, sp.csc_matrix(self.weights_[1]))
            self._by_column = cached
        return cached[1]

    # ----- persistence -------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        arrays = {"active": self.active_, "self_weights": self.self_weights_}
        for name, factor in zip(("encoder", "decoder"), self.weights_, strict=True):
            arrays |= {
                f"{name}_data": factor.data,
                f"{name}_indices": factor.indices,
                f"{name}_indptr": factor.indptr,
            }
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.active_ = np.asarray(arrays["active"])
        self.self_weights_ = np.asarray(arrays["self_weights"])
        size = len(self.active_)
        self.weights_ = tuple(
            sp.csr_matrix(
                tuple(
                    np.asarray(arrays[f"{name}_{part}"]) for part in ("data", "indices", "indptr")
                ),
                shape=(size, size),
            )
            for name in ("encoder", "decoder")
        )
        self._build_lookup()
