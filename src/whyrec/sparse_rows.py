"""Read a few rows of a compressed sparse matrix straight from its index arrays.

Explaining one request touches a few dozen rows (or columns) of the interaction matrix and
the item-attribute graph. scipy builds a new matrix object for every selection and
product, which on such tiny pieces costs 20-60 µs of Python per call against a few
microseconds of actual work, so the hot paths read `indptr`/`indices` with numpy instead.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

DENSE_TABLE_FACTOR = 8
"""`distinct_per_group` marks keys in a table when it has at most this many cells per key."""


def gather_rows(
    matrix: sp.csr_matrix | sp.csc_matrix, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index into `rows`, stored column) of every entry in the selected major rows.

    For a CSR matrix these are rows and their column indices; for a CSC matrix the same
    call gives columns and their row indices. Entries come row by row in stored order;
    repeated rows are gathered again.
    """
    owners, entries = gather_entries(matrix, rows)
    return owners, matrix.indices[entries].astype(np.int64)


def gather_entries(
    matrix: sp.csr_matrix | sp.csc_matrix, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index into `rows`, position in `indices`/`data`) of every entry of the selected
    major rows, row by row in stored order."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = matrix.indptr[rows].astype(np.int64)
    lengths = matrix.indptr[rows + 1].astype(np.int64) - starts
    owners = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    # position inside its own row: a running count that restarts at every row
    row_starts = np.cumsum(lengths) - lengths
    within = np.arange(len(owners), dtype=np.int64) - np.repeat(row_starts, lengths)
    return owners, starts[owners] + within


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array (`np.unique` without its per-call cost:
    numpy 2's hash-based unique took ~400 µs on the ~5,000 keys of one explanation).

    The stable sort is timsort, which merges the already sorted runs that `gather_rows`
    yields (one per row) in about half the time of the default sort.
    """
    ordered = np.sort(values, kind="stable")
    if len(ordered) == 0:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def distinct_per_group(keys: np.ndarray, group_size: int, n_groups: int) -> np.ndarray:
    """How many distinct keys fall in each group, keys being group × group_size + member.

    Marks in a dense table when it is small next to the keys (a few zeroed bytes beat a
    sort), else counts the sorted distinct keys, so a request over millions of users
    never allocates a table that size.
    """
    if n_groups * group_size <= DENSE_TABLE_FACTOR * len(keys):
        marks = np.zeros(n_groups * group_size, dtype=bool)
        marks[keys] = True
        return np.count_nonzero(marks.reshape(n_groups, group_size), axis=1)
    return np.bincount(distinct(keys) // group_size, minlength=n_groups)


def place_in_run(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... restarting wherever the value changes in a sorted array: each entry's
    place inside its group, so `place_in_run(rows) < n` keeps the first n of every row."""
    return np.arange(len(sorted_groups)) - np.searchsorted(sorted_groups, sorted_groups)


def dense_product(left: sp.csr_matrix, right: sp.csr_matrix) -> np.ndarray:
    """left @ right as a dense float32 array, for a few rows against a wide sparse matrix.

    One compiled pass adds each named right row into a dense output row. scipy's sparse
    product builds a linked list per row, then its result is sorted and densified: on
    the ~300k-entry gathers of a history against SANSA's factors that cost 2.5 ms where
    this costs well under one; a numpy gather + `bincount` was slower than scipy.
    """
    out = np.zeros((left.shape[0], right.shape[1]), dtype=np.float32)
    _add_rows(
        left.indptr, left.indices, left.data.astype(np.float32, copy=False),
        right.indptr, right.indices, right.data.astype(np.float32, copy=False), out,
    )  # fmt: skip
    return out


@functools.cache
def _compiled_add_rows():
    import numba

    @numba.njit(cache=True, nogil=True)
    def add_rows(left_indptr, left_indices, left_data, indptr, indices, data, out):
        for row in range(len(left_indptr) - 1):
            for entry in range(left_indptr[row], left_indptr[row + 1]):
                item, weight = left_indices[entry], left_data[entry]
                for at in range(indptr[item], indptr[item + 1]):
                    out[row, indices[at]] += weight * data[at]

    return add_rows


def _add_rows(*arrays) -> None:
    """out[r] += Σ left[r, i] · right[i] (compiled with numba on first use, cached on disk)."""
    _compiled_add_rows()(*arrays)
