"""An item–attribute bipartite graph built from the catalog.

Items on one side, attribute values (named `field=value`, e.g. `genres=Comedy`) on the
other, an edge where an item carries a value. It grounds explanations ("you liked A,
which like B is tagged pixar") and retrieval (personalized PageRank from the items and
values in a request). Everything is a scipy sparse matrix so a graph over a large
catalog costs a few sparse products, never a Python loop over nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.data.vocabulary import Vocabulary
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.sparse_rows import gather_rows

DEFAULT_RESTART = 0.15
"""PageRank restart probability: the share of mass sent back to the seeds each step."""


def value_node_name(field_name: str, value: str) -> str:
    """The graph name of an attribute value: `field=value`."""
    return f"{field_name}={value}"


@dataclass(frozen=True)
class AttributePath:
    """liked item → shared attribute value → target item, with its weight.

    `weight` is the value's inverse item frequency times the weight of the liked item
    (its share of the score when explaining), so a rare shared tag outranks a genre
    that half the catalog has.
    """

    source: int
    value_node: int
    field: str
    value: str
    target: int
    weight: float

    def to_dict(self, catalog: Catalog | None = None) -> dict:
        data: dict = {
            "field": self.field,
            "value": self.value,
            "weight": round(self.weight, 6),
        }
        if catalog is not None:
            data = {
                "from_item_id": catalog.item_ids[self.source],
                "from_title": catalog.titles[self.source],
                **data,
                "to_item_id": catalog.item_ids[self.target],
            }
        return data


@dataclass
class AttributeGraph:
    """Items × attribute values as a binary CSR incidence matrix.

    `value_fields[v]` and `value_labels[v]` give the field and value of column v;
    `item_frequency[v]` is how many items carry it and `idf[v] = log(n_items / freq)`.
    """

    incidence: sp.csr_matrix
    value_fields: list[str]
    value_labels: list[str]
    item_frequency: np.ndarray = field(init=False)
    idf: np.ndarray = field(init=False)
    _index: Vocabulary = field(init=False, repr=False)
    _incidence_t: sp.csr_matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.incidence = sp.csr_matrix(self.incidence, dtype=np.float64)
        # one stored entry per (item, value): `shared_values` reads the index arrays directly
        self.incidence.sum_duplicates()
        self.incidence.eliminate_zeros()
        if self.incidence.shape[1] != len(self.value_labels) or len(self.value_fields) != len(
            self.value_labels
        ):
            raise WhyrecError("attribute graph: value names do not match the matrix columns")
        self.item_frequency = np.asarray(self.incidence.sum(axis=0)).ravel()
        n_items = max(1, self.incidence.shape[0])
        self.idf = np.log(n_items / np.maximum(self.item_frequency, 1.0))
        self._index = Vocabulary(self.value_names, "attribute value")
        self._incidence_t = self.incidence.T.tocsr()

    @classmethod
    def from_catalog(cls, catalog: Catalog, fields: Sequence[str] | None = None) -> AttributeGraph:
        """Build the graph over the given attribute fields (default: all of them)."""
        names = list(fields) if fields is not None else catalog.fields
        value_fields: list[str] = []
        value_labels: list[str] = []
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        for name in names:
            if name not in catalog.attributes:
                raise NotFoundError(f"unknown attribute field {name!r}; fields: {catalog.fields}")
            column = catalog.attributes[name]
            codes: dict[str, int] = {}
            lengths = np.fromiter((len(v) for v in column), dtype=np.int64, count=len(column))
            flat = [codes.setdefault(v, len(codes)) for values in column for v in values]
            offset = len(value_labels)
            rows.append(np.repeat(np.arange(len(column)), lengths))
            cols.append(np.asarray(flat, dtype=np.int64) + offset)
            value_fields.extend([name] * len(codes))
            value_labels.extend(codes)
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        incidence = sp.csr_matrix(
            (np.ones(len(row)), (row, col)), shape=(len(catalog), len(value_labels))
        )
        incidence.sum_duplicates()
        incidence.data[:] = 1.0
        return cls(incidence, value_fields, value_labels)

    # ----- naming ---------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.incidence.shape[0]

    @property
    def n_values(self) -> int:
        return self.incidence.shape[1]

    @property
    def value_names(self) -> list[str]:
        return [
            value_node_name(f, v) for f, v in zip(self.value_fields, self.value_labels, strict=True)
        ]

    def value_node(self, name: str) -> int:
        """Column of a `field=value` node (exact match first, then case-insensitive)."""
        if name in self._index:
            return self._index[name]
        lowered = {n.lower(): v for n, v in self._index.items()}
        try:
            return lowered[name.lower()]
        except KeyError:
            raise NotFoundError(f"no attribute value node {name!r}") from None

    def item_values(self, position: int) -> np.ndarray:
        """Value nodes of one item."""
        start, end = self.incidence.indptr[position], self.incidence.indptr[position + 1]
        return self.incidence.indices[start:end]

    def items_with(self, value_node: int) -> np.ndarray:
        """Item positions carrying one value node."""
        start, end = self._incidence_t.indptr[value_node], self._incidence_t.indptr[value_node + 1]
        return self._incidence_t.indices[start:end]

    # ----- paths ----------------------------------------------------------------------
    def paths(
        self,
        sources: np.ndarray,
        target: int,
        source_weights: np.ndarray | None = None,
        limit: int | None = None,
    ) -> list[AttributePath]:
        """Paths source item → shared value → target, heaviest first.

        The weight of a path is idf(value) × the source's weight (1 by default), so the
        paths that best explain a target go through rare values shared with the history
        items that mattered most.
        """
        sources = np.asarray(sources, dtype=np.int64)
        paths = self.paths_between(sources, np.full(len(sources), target), source_weights)
        return paths if limit is None else paths[:limit]

    def shared_values(
        self, sources: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pair index, value node) of every value that sources[i] and targets[i] share."""
        # numpy on the CSR arrays, not row selections and a product: for the few dozen
        # pairs of one request, scipy's object building cost more than the work itself
        sources = np.asarray(sources, dtype=np.int64)
        index, values = gather_rows(self.incidence, np.concatenate([sources, targets]))
        n_pairs, n_values = len(sources), max(self.n_values, 1)
        is_source = index < n_pairs
        keys = (index % max(n_pairs, 1)) * n_values + values  # (pair, value)
        shared = np.intersect1d(keys[is_source], keys[~is_source], assume_unique=True)
        return shared // n_values, shared % n_values

    def paths_between(
        self,
        sources: np.ndarray,
        targets: np.ndarray,
        source_weights: np.ndarray | None = None,
    ) -> list[AttributePath]:
        """All paths of many (source, target) pairs at once, heaviest first.

        Pair i links `sources[i]` to `targets[i]`; explaining a whole list is then one
        element-wise product of two row selections of the incidence matrix.
        """
        sources = np.asarray(sources, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        if len(sources) != len(targets):
            raise WhyrecError("paths_between needs one target per source")
        if len(sources) == 0:
            return []
        weights = (
            np.ones(len(sources)) if source_weights is None else np.asarray(source_weights, float)
        )
        rows, cols = self.shared_values(sources, targets)
        path_weights = self.idf[cols] * weights[rows]
        order = np.lexsort((cols, rows, -path_weights))
        return [
            AttributePath(
                source=int(sources[rows[i]]),
                value_node=int(cols[i]),
                field=self.value_fields[cols[i]],
                value=self.value_labels[cols[i]],
                target=int(targets[rows[i]]),
                weight=float(path_weights[i]),
            )
            for i in order
        ]

    def value_profile(
        self, items: np.ndarray, item_weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Σ over items of weight × idf for each value they carry: what a set of items favours."""
        items = np.asarray(items, dtype=np.int64)
        weights = np.ones(len(items)) if item_weights is None else np.asarray(item_weights, float)
        return np.asarray(self.incidence[items].T @ weights).ravel() * self.idf

    # ----- personalized PageRank --------------------------------------------------------
    def personalized_pagerank(
        self,
        seed_items: Sequence[int] | np.ndarray = (),
        seed_values: Sequence[int | str] = (),
        restart: float = DEFAULT_RESTART,
        tol: float = 1e-10,
        max_iter: int = 200,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stationary visit probabilities of a random walk that restarts at the seeds.

        The walk alternates item → value → item, each step uniform over neighbours;
        with probability `restart` it jumps back to the seed distribution (uniform over
        the seeds). A node without edges sends its mass back to the seeds, so the
        scores always sum to 1. Returns (item scores, value scores).

        Power iteration on the two blocks of the bipartite transition matrix: each step
        is two sparse matrix-vector products.
        """
        if not 0.0 < restart <= 1.0:
            raise WhyrecError("restart must lie in (0, 1]")
        value_nodes = [
            v if isinstance(v, int | np.integer) else self.value_node(v) for v in seed_values
        ]
        seed_item_array = np.asarray(seed_items, dtype=np.int64)
        seed_value_array = np.asarray(value_nodes, dtype=np.int64)
        n_seeds = len(seed_item_array) + len(seed_value_array)
        if n_seeds == 0:
            raise WhyrecError("personalized PageRank needs at least one seed item or value")
        if (seed_item_array < 0).any() or (seed_item_array >= self.n_items).any():
            raise WhyrecError("seed item position out of range")
        seed_items_vec = np.bincount(seed_item_array, minlength=self.n_items) / n_seeds
        seed_values_vec = np.bincount(seed_value_array, minlength=self.n_values) / n_seeds

        item_degree = np.asarray(self.incidence.sum(axis=1)).ravel()
        value_degree = self.item_frequency
        item_out = np.divide(
            1.0, item_degree, out=np.zeros_like(item_degree), where=item_degree > 0
        )
        value_out = np.divide(
            1.0, value_degree, out=np.zeros_like(value_degree), where=value_degree > 0
        )
        item_dangling = item_degree == 0
        value_dangling = value_degree == 0

        items_rank, values_rank = seed_items_vec.copy(), seed_values_vec.copy()
        walk = 1.0 - restart
        for _ in range(max_iter):
            lost = items_rank[item_dangling].sum() + values_rank[value_dangling].sum()
            new_items = walk * (self.incidence @ (values_rank * value_out))
            new_values = walk * (self._incidence_t @ (items_rank * item_out))
            back = restart + walk * lost
            new_items += back * seed_items_vec
            new_values += back * seed_values_vec
            change = np.abs(new_items - items_rank).sum() + np.abs(new_values - values_rank).sum()
            items_rank, values_rank = new_items, new_values
            if change < tol:
                break
        return items_rank, values_rank
