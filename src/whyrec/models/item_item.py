"""The common shape of linear item-to-item models (EASE, ItemKNN).

score(u, j) = Σ_{i ∈ history(u)} W[i, j], with W learned over the items that occur in the
training data. Because the score is a sum over history items, each item's contribution
is exact, which is what makes these models' explanations faithful by construction.
Subclasses only learn W (dense, sparse, or as SANSA a product of two sparse factors, which
overrides `_history_scores` and `_weights_block`); scoring, the id lookup and contributions
are here once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Self

import numpy as np
import scipy.sparse as sp

from whyrec.data.dataset import Dataset
from whyrec.models.base import Histories, Recommender, histories_to_csr
from whyrec.ranking import CandidateScores
from whyrec.sparse_rows import dense_product, distinct, gather_entries


class ItemItemModel(Recommender):
    """Base of models whose scores are history rows of an item-item weight matrix."""

    @abstractmethod
    def learn_weights(self, matrix: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
        """W for a binary users × active-items matrix."""

    def fit(self, dataset: Dataset) -> Self:
        matrix = dataset.matrix
        self.n_items_ = dataset.n_items
        self.active_ = np.flatnonzero(matrix.getnnz(axis=0) > 0).astype(np.int64)
        self.weights_ = self.learn_weights(matrix[:, self.active_].tocsr())
        self._build_lookup()
        return self

    def _build_lookup(self) -> None:
        """Catalog position → row/column of W, -1 for items absent from training."""
        lookup = np.full(self.n_items_, -1, dtype=np.int64)
        lookup[self.active_] = np.arange(len(self.active_))
        self._active_of = lookup

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        matrix = self._active_rows(histories)
        active_scores = self._history_scores(matrix)
        scores = np.full((matrix.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        scores[:, self.active_] = active_scores
        return scores if items is None else scores[:, np.asarray(items)]

    def _history_scores(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Dense scores over W's columns for binary history rows over W's rows (X @ W)."""
        if sp.issparse(self.weights_):
            return dense_product(matrix, self.weights_)
        return np.asarray(matrix @ self.weights_)

    def candidate_scores(self, history: np.ndarray) -> CandidateScores | None:
        """The items one history reaches through a sparse W (its nonzero scores); every
        other active item scores 0. None for a dense W (EASE), which reaches them all.

        The row over W's columns is still summed densely (`dense_product`, compiled);
        what the engine saves is the catalog-sized row, its mask and the top-k over it."""
        if not sp.issparse(self._scoring_weights()):
            return None
        row = self._history_scores(self._active_rows([history]))[0]
        reached = np.flatnonzero(row != 0)  # a bool mask: 6x faster than on floats
        return CandidateScores(
            positions=self.active_[reached],  # active_ is sorted: so are these
            values=row[reached],
            base=self.active_,
            fill=0.0,
            n_items=self.n_items_,
        )

    def _scoring_weights(self):
        """What `_history_scores` multiplies by (SANSA: its sparse factors)."""
        return self.weights_

    def _active_rows(self, histories: Histories) -> sp.csr_matrix:
        """Histories as a binary float32 CSR over W's rows (sorted, each item once).

        Built from the lookup directly: going through `histories_to_csr` and a column
        selection made three scipy matrices per call, a fifth of a one-user `score`.
        """
        if sp.issparse(histories):
            return histories_to_csr(histories, self.n_items_)[:, self.active_]
        rows = [self._active_of[np.asarray(h, dtype=np.int64)] for h in histories]  # checked
        rows = [distinct(r[r >= 0]) for r in rows]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indices = np.concatenate(rows) if len(rows) else np.zeros(0, dtype=np.int64)
        return sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, np.r_[0, np.cumsum(lengths)]),
            shape=(len(rows), len(self.active_)),
        )

    def contributions(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows = self._active_of[np.asarray(history, dtype=np.int64)]
        cols = self._active_of[np.asarray(items, dtype=np.int64)]
        out = np.zeros((len(cols), len(rows)), dtype=np.float32)
        known_r, known_c = rows >= 0, cols >= 0
        if known_r.any() and known_c.any():
            # gather only the needed weights: copying whole history rows of a dense
            # 10k-item matrix cost more than everything else in an explanation
            block = self._weights_block(rows[known_r], cols[known_c])
            out[np.ix_(known_c, known_r)] = block.T
        return out

    def _weights_block(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """W[rows][:, cols] as a dense array (rows and cols index W and may repeat)."""
        if not sp.issparse(self.weights_):
            return self.weights_[np.ix_(rows, cols)]
        # numpy on a CSC copy of W: a target's column holds its few neighbours, while
        # scipy's fancy indexing went through whole history rows and five new matrices
        by_column = self._weights_by_column()
        liked, repeat = np.unique(rows, return_inverse=True)
        row_of = np.full(by_column.shape[0], -1, dtype=np.int64)
        row_of[liked] = np.arange(len(liked))
        owners, entries = gather_entries(by_column, cols)
        found = row_of[by_column.indices[entries]]
        hit = found >= 0
        block = np.zeros((len(liked), len(cols)), dtype=by_column.dtype)
        np.add.at(block, (found[hit], owners[hit]), by_column.data[entries[hit]])
        return block[repeat]

    def _weights_by_column(self) -> sp.csc_matrix:
        """A column-major copy of a sparse W, made on first use for these weights."""
        cached = self.__dict__.get("_by_column")
        if cached is None or cached[0] is not self.weights_:
            cached = (self.weights_, sp.csc_matrix(self.weights_))
            self._by_column = cached
        return cached[1]
