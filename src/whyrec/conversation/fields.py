"""The values a conversation can ask about, derived from a catalog's own fields.

No field is named here. Every attribute field of `items.csv` becomes askable values:

- categorical fields, single- or multi-valued, give one value per distinct label;
- hierarchical labels (`Food>Pizza`, a path as in Yelp's categories) give every prefix
  of the path (`Food` and `Food>Pizza`), so a coarse question can come before a fine one;
- numeric fields (every label a number), and the catalog's years, give ranges from the
  lowest value up to each quantile edge ("1930–1994"): a yes keeps that range, a no
  keeps the rest, so a few answers narrow a number down as in a binary search.

Which of these are worth asking is left to the data: a value held by a single item names
that item rather than describing a kind of item, and a value every item has says
nothing, so both are left out; among the rest the policy asks what splits its current
candidates best. The matrix is sparse, so a field with thousands of distinct values
costs memory in proportion to its item-value pairs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.data.vocabulary import Vocabulary

PATH_SEPARATOR = ">"
YEAR_FIELD = "year"
"""The name under which the catalog's years are asked about (as ranges)."""


@dataclass(frozen=True)
class Column:
    """One askable value: its field, its label, and how it was derived."""

    field: str
    value: str
    kind: str  # "value", "path" or "range"
    low: float | None = None
    high: float | None = None

    @property
    def words(self) -> str:
        """How a person names it: the leaf of a path, the label otherwise."""
        return (
            self.value.rpartition(PATH_SEPARATOR)[2].strip() if self.kind == "path" else self.value
        )


def _number(label: str) -> float | None:
    try:
        number = float(label)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_edges(numbers: np.ndarray) -> np.ndarray:
    """Quantile edges, one per bit of the distinct values (at most eight): enough ranges to
    halve the candidates a few times, never more ranges than distinct numbers."""
    distinct = np.unique(numbers)
    bins = min(8, max(2, int(math.log2(len(distinct))))) if len(distinct) > 1 else 1
    edges = np.unique(np.quantile(numbers, np.arange(1, bins) / bins, method="lower"))
    return edges[edges < distinct.max()]


class AttributeSpace:
    """Items × askable values as a sparse 0/1 matrix, with a look-up by (field, value)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        n = len(catalog)
        columns: list[Column] = []
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []

        def add(column: Column, items: np.ndarray) -> None:
            count = len(items)
            if count < 2 or count >= n:
                return  # names one item, or describes every item: nothing to ask
            rows.append(items)
            cols.append(np.full(count, len(columns), dtype=np.int64))
            columns.append(column)

        for name, cells in catalog.attributes.items():
            numbers = self._numeric(cells)
            if numbers is not None:
                self._add_ranges(name, numbers[0], numbers[1], add)
            else:
                self._add_labels(name, cells, add)
        years = catalog.years
        known = np.flatnonzero(np.isfinite(years))
        if len(known) and YEAR_FIELD not in catalog.attributes:
            self._add_ranges(YEAR_FIELD, known, years[known], add)
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        matrix = sp.csr_matrix(
            (np.ones(len(row), dtype=np.float64), (row, col)), shape=(n, len(columns))
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        self.columns = columns
        self.matrix = matrix
        """Items × columns (CSR)."""
        self.by_column = matrix.T.tocsr()
        """Columns × items (CSR): the items of one column, and counts over a candidate mask."""
        self.frequency = np.diff(self.by_column.indptr)
        self._index = Vocabulary(
            [(c.field, c.value.lower()) for c in columns], "attribute value", duplicates="last"
        )

    # ----- building --------------------------------------------------------------------
    @staticmethod
    def _numeric(cells: list[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray] | None:
        """(item positions, numbers) when every label of a field is a number."""
        items, numbers = [], []
        for position, values in enumerate(cells):
            for label in values:
                number = _number(label)
                if number is None:
                    return None
                items.append(position)
                numbers.append(number)
        if len(set(numbers)) < 3:
            return None  # two numbers are two categories ("0"/"1"), not a scale
        return np.asarray(items, dtype=np.int64), np.asarray(numbers, dtype=np.float64)

    @staticmethod
    def _add_ranges(name: str, items: np.ndarray, numbers: np.ndarray, add) -> None:
        low = float(numbers.min())
        for edge in _range_edges(numbers):
            label = f"{_format_number(low)}–{_format_number(edge)}"
            inside = np.unique(items[numbers <= edge])
            add(Column(name, label, "range", low, float(edge)), inside)

    @staticmethod
    def _add_labels(name: str, cells: list[tuple[str, ...]], add) -> None:
        members: dict[tuple[str, str], list[int]] = {}
        for position, values in enumerate(cells):
            for label in values:
                parts = [p.strip() for p in label.split(PATH_SEPARATOR)]
                if len(parts) > 1 and all(parts):
                    for depth in range(1, len(parts) + 1):
                        path = PATH_SEPARATOR.join(parts[:depth])
                        members.setdefault((path, "path"), []).append(position)
                else:
                    members.setdefault((label, "value"), []).append(position)
        for (label, kind), positions in members.items():
            add(Column(name, label, kind), np.unique(np.asarray(positions, dtype=np.int64)))

    # ----- queries -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.columns)

    def column(self, field_name: str, value: str) -> int | None:
        return self._index.get((field_name, value.lower()))

    def items(self, column: int) -> np.ndarray:
        start, stop = self.by_column.indptr[column], self.by_column.indptr[column + 1]
        return self.by_column.indices[start:stop]

    def mask(self, field_name: str, value: str) -> np.ndarray:
        """Items having a value; one the space leaves out (held by one item, or a value
        no item has) is looked up in the catalog directly."""
        mask = np.zeros(len(self.catalog), dtype=bool)
        column = self.column(field_name, value)
        if column is not None:
            mask[self.items(column)] = True
        elif field_name in self.catalog.attributes:
            mask = self.catalog.mask_with_value(field_name, [value])
        return mask

    def has(self, position: int, field_name: str, value: str) -> bool:
        column = self.column(field_name, value)
        if column is None:
            return value.lower() in {v.lower() for v in self.catalog.values(field_name, position)}
        start, stop = self.matrix.indptr[position], self.matrix.indptr[position + 1]
        return bool(np.any(self.matrix.indices[start:stop] == column))

    def columns_of(self, position: int) -> list[int]:
        start, stop = self.matrix.indptr[position], self.matrix.indptr[position + 1]
        return [int(c) for c in self.matrix.indices[start:stop]]

    def counts(self, allowed: np.ndarray) -> np.ndarray:
        """How many allowed items have each value: one sparse product, O(item-value pairs)."""
        return self.by_column @ allowed.astype(np.float64)

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        """The summed weight (belief, popularity) of the items having each value."""
        return self.by_column @ weights

    def synonyms(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Words that name a value other than its full label: the leaf of a path."""
        return {
            (c.field, c.value): (c.words,)
            for c in self.columns
            if c.kind == "path" and c.words.lower() != c.value.lower()
        }

    def fields(self) -> dict[str, int]:
        """Askable values per field (what `simulate` reports)."""
        out: dict[str, int] = {}
        for c in self.columns:
            out[c.field] = out.get(c.field, 0) + 1
        return out
