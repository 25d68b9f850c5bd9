"""Interactions plus the catalog they refer to.

A `Dataset` keeps the original ids (strings, as they appear in the data) next to the
integer codes models need, so no code juggles parallel lists of ids and indices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.data.vocabulary import Vocabulary
from whyrec.errors import DataError

INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def _natural_order(ids: np.ndarray) -> np.ndarray:
    """Sort ids numerically when they all are integers ("2" before "10"), else as text."""
    ids = np.asarray(ids, dtype=object)
    try:
        return ids[np.argsort(np.array([int(i) for i in ids]), kind="stable")]
    except ValueError:
        return np.sort(ids)


def lookup_column(series: pd.Series, lookup: Callable[[Iterable], np.ndarray]) -> np.ndarray:
    """`lookup` applied to a column of ids, -1 where unknown.

    A categorical column (what the chunked reader makes of large files) is looked up once
    per distinct id and broadcast through its codes: O(distinct) Python work, not O(rows).
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        per_category = np.append(lookup(series.cat.categories), -1)
        return per_category[series.cat.codes.to_numpy()]  # code -1 (missing) → last slot
    return lookup(series)


@dataclass
class Dataset:
    """Implicit-feedback interactions over a catalog.

    `interactions` has the columns user_id (str), item_id (str), rating (float, NaN if
    the data has none) and timestamp (int; the row order when the data has no times,
    with `has_timestamps` False). `user_ids` fixes the user order; splits of one dataset
    share it so that a user's row is the same in train and test.
    """

    interactions: pd.DataFrame
    catalog: Catalog
    name: str = "data"
    has_timestamps: bool = True
    user_ids: np.ndarray | None = None
    _codes: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        frame = self.interactions
        missing = [c for c in INTERACTION_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"interactions lack columns {missing}")
        frame = frame[INTERACTION_COLUMNS].reset_index(drop=True)
        positions = lookup_column(frame["item_id"], self.catalog.positions)
        if (positions < 0).any():
            unknown = frame.loc[positions < 0, "item_id"].unique()[:5]
            raise DataError(f"interactions mention items missing from the catalog: {list(unknown)}")
        self.interactions = frame
        if self.user_ids is None:
            self.user_ids = _natural_order(frame["user_id"].unique())
        self.user_ids = np.asarray(self.user_ids, dtype=object)

    # ----- codes ------------------------------------------------------------------
    @cached_property
    def user_index(self) -> Vocabulary:
        """User id → training row."""
        assert self.user_ids is not None
        return Vocabulary(self.user_ids, "user")

    @property
    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(user row, item column) of every interaction, in the frame's order."""
        if self._codes is None:
            index = self.user_index
            rows = lookup_column(
                self.interactions["user_id"],
                index.numbers,
            )
            if (rows < 0).any():
                raise DataError("interactions mention users outside the dataset's user list")
            cols = lookup_column(self.interactions["item_id"], self.catalog.positions)
            self._codes = (rows.astype(np.int64, copy=False), cols)
        return self._codes

    @property
    def n_users(self) -> int:
        assert self.user_ids is not None
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def __len__(self) -> int:
        return len(self.interactions)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Binary users × items CSR matrix (repeated interactions count once)."""
        rows, cols = self.codes
        data = np.ones(len(rows), dtype=np.float32)
        mat = sp.csr_matrix((data, (rows, cols)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    def item_popularity(self) -> np.ndarray:
        """φ(i): number of distinct users who interacted with each item."""
        return np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)

    def user_row(self, user_id: str) -> int:
        return self.user_index[str(user_id)]

    @cached_property
    def _time_order(self) -> tuple[np.ndarray, np.ndarray]:
        """Row order sorted by (user, time, file order) and each user's slice bounds.

        Built once (8 bytes a row), so one user's history is a slice, not a scan of every
        interaction: on 1e7 rows that is microseconds instead of ~0.1 s a request.
        """
        rows, _ = self.codes
        times = self.interactions["timestamp"].to_numpy()
        order = np.lexsort((np.arange(len(rows)), times, rows))
        bounds = np.searchsorted(rows[order], np.arange(self.n_users + 1))
        return order, bounds

    def histories(self) -> list[np.ndarray]:
        """Each user's item positions in time order (ties keep file order)."""
        _, cols = self.codes
        order, bounds = self._time_order
        sorted_cols = cols[order]
        return [sorted_cols[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def history(self, user_id: str) -> np.ndarray:
        """One user's item positions in time order."""
        row = self.user_row(user_id)
        _, cols = self.codes
        order, bounds = self._time_order
        return cols[order[bounds[row] : bounds[row + 1]]]

    # ----- derived datasets ---------------------------------------------------------
    def with_interactions(self, frame: pd.DataFrame, keep_users: bool = True) -> Dataset:
        """A dataset over the same catalog (and by default the same user order)."""
        return Dataset(
            interactions=frame,
            catalog=self.catalog,
            name=self.name,
            has_timestamps=self.has_timestamps,
            user_ids=self.user_ids if keep_users else None,
        )

    def filter_min_rating(self, threshold: float | None) -> Dataset:
        """Keep interactions rated at least `threshold`; unrated ones always stay."""
        if threshold is None:
            return self
        ratings = self.interactions["rating"]
        keep = ratings.isna() | (ratings >= threshold)
        if not keep.any():
            raise DataError(f"no interaction has a rating of at least {threshold}")
        return self.with_interactions(self.interactions[keep], keep_users=False)

    def kcore(self, k: int) -> Dataset:
        """Repeatedly drop users and items with fewer than k interactions."""
        if k <= 1:
            return self
        frame = self.interactions
        while True:
            users = frame["user_id"].map(frame["user_id"].value_counts())
            items = frame["item_id"].map(frame["item_id"].value_counts())
            keep = (users >= k) & (items >= k)
            if keep.all():
                break
            frame = frame[keep]
        if frame.empty:
            raise DataError(f"nothing is left after {k}-core filtering")
        return self.with_interactions(frame, keep_users=False)

    def info(self) -> dict:
        """Summary figures printed by `whyrec data info`."""
        n_users = self.interactions["user_id"].nunique()
        n_items_used = self.interactions["item_id"].nunique()
        times = self.interactions["timestamp"]
        info = {
            "name": self.name,
            "users": int(n_users),
            "items": len(self.catalog),
            "items_with_interactions": int(n_items_used),
            "interactions": len(self.interactions),
            "density": len(self.interactions) / max(1, n_users * n_items_used),
            "rated": bool(self.interactions["rating"].notna().any()),
            "attribute_fields": {f: len(self.catalog.value_counts(f)) for f in self.catalog.fields},
        }
        if self.has_timestamps and len(times):
            info["time_range"] = [
                pd.to_datetime(int(times.min()), unit="s").isoformat(),
                pd.to_datetime(int(times.max()), unit="s").isoformat(),
            ]
        return info
