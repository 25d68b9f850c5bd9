"""Reproducible train/test splits (README, "Data options").

Every method is seeded; ties in time are broken by a seeded random key so the same
seed gives the same split on any machine. After splitting, test interactions that
cannot be evaluated fairly are removed and counted: pairs already in train (repeat
consumption), users without training data and items without training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.data.dataset import Dataset
from whyrec.data.loaders import interactions_frame, read_canonical_interactions, read_table
from whyrec.errors import DataError

SPLIT_METHODS = ("loo", "user-temporal", "temporal", "random", "fixed", "cold-users")


@dataclass
class Split:
    """A train and a test dataset over the same catalog and user order."""

    train: Dataset
    test: Dataset
    method: str
    params: dict = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.method}({params})"


def _ordered_with_ties(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Sort by user then time, breaking equal times with a seeded random key."""
    rng = np.random.default_rng(seed)
    keyed = frame.assign(_tie=rng.random(len(frame)))
    return keyed.sort_values(["user_id", "timestamp", "_tie"], kind="stable")


def _holdout_per_user(frame: pd.DataFrame, seed: int, counts_fn, shuffle: bool) -> pd.Series:
    """Mark, per user, the last `counts_fn(n)` interactions (by time, or shuffled) as test."""
    if shuffle:
        rng = np.random.default_rng(seed)
        ordered = frame.assign(_tie=rng.random(len(frame))).sort_values(["user_id", "_tie"])
    else:
        ordered = _ordered_with_ties(frame, seed)
    sizes = ordered.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    from_end = ordered.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    holdout = np.array([counts_fn(n) for n in range(sizes.max() + 1)])[sizes]
    is_test = pd.Series(from_end < holdout, index=ordered.index)
    return is_test.reindex(frame.index)


def _n_test_fraction(fraction: float):
    def count(n: int) -> int:
        if n < 2:
            return 0  # a user needs at least one training interaction
        return min(n - 1, max(1, math.ceil(fraction * n)))

    return count


def split(
    dataset: Dataset,
    method: str = "loo",
    *,
    seed: int = 42,
    test_fraction: float = 0.2,
    train_file: Path | None = None,
    test_file: Path | None = None,
    drop_cold_items: bool = True,
) -> Split:
    """Split a dataset by one of `SPLIT_METHODS`."""
    frame = dataset.interactions
    params: dict = {"seed": seed}
    if method == "loo":
        is_test = _holdout_per_user(frame, seed, lambda n: 1 if n >= 2 else 0, shuffle=False)
    elif method == "user-temporal":
        is_test = _holdout_per_user(frame, seed, _n_test_fraction(test_fraction), shuffle=False)
        params["test_fraction"] = test_fraction
    elif method == "random":
        is_test = _holdout_per_user(frame, seed, _n_test_fraction(test_fraction), shuffle=True)
        params["test_fraction"] = test_fraction
    elif method == "temporal":
        if not dataset.has_timestamps:
            raise DataError("a temporal split needs timestamps, and this data has none")
        cut = np.quantile(frame["timestamp"].to_numpy(), 1.0 - test_fraction, method="higher")
        is_test = frame["timestamp"] >= cut
        params.update(test_fraction=test_fraction, cut=int(cut))
    elif method == "cold-users":
        return cold_users_split(dataset, test_fraction, seed, drop_cold_items)
    elif method == "fixed":
        if train_file is None or test_file is None:
            raise DataError("a fixed split needs both --train-file and --test-file")
        return fixed_split(dataset, Path(train_file), Path(test_file), drop_cold_items)
    else:
        raise DataError(f"unknown split method {method!r}; choose from {', '.join(SPLIT_METHODS)}")
    train = frame[~is_test.to_numpy()]
    test = frame[is_test.to_numpy()]
    return _finish(dataset, train, test, method, params, drop_cold_items)


def _finish(
    dataset: Dataset,
    train: pd.DataFrame,
    test: pd.DataFrame,
    method: str,
    params: dict,
    drop_cold_items: bool,
) -> Split:
    """Remove test rows that cannot be judged fairly, count them, and build the datasets."""
    from whyrec.console import warn

    dropped: dict[str, int] = {}
    train_pairs = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
    repeat = pd.MultiIndex.from_frame(test[["user_id", "item_id"]]).isin(train_pairs)
    dropped["repeated_in_train"] = int(repeat.sum())
    test = test[~repeat]
    cold_user = ~test["user_id"].isin(set(train["user_id"]))
    dropped["users_not_in_train"] = int(test.loc[cold_user, "user_id"].nunique())
    dropped["rows_of_users_not_in_train"] = int(cold_user.sum())
    test = test[~cold_user]
    if drop_cold_items:
        cold_item = ~test["item_id"].isin(set(train["item_id"]))
        dropped["items_not_in_train"] = int(test.loc[cold_item, "item_id"].nunique())
        dropped["rows_of_items_not_in_train"] = int(cold_item.sum())
        test = test[~cold_item]
    if train.empty or test.empty:
        raise DataError(
            f"the {method} split leaves an empty {'train' if train.empty else 'test'} set"
        )
    lost = {k: v for k, v in dropped.items() if v and k.startswith(("users", "items", "repeated"))}
    if lost:
        warn(
            "test rows dropped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in lost.items())
        )
    users = dataset.with_interactions(train, keep_users=False).user_ids
    return Split(
        train=Dataset(train, dataset.catalog, dataset.name, dataset.has_timestamps, users),
        test=Dataset(test, dataset.catalog, dataset.name, dataset.has_timestamps, users),
        method=method,
        params=params,
        dropped=dropped,
    )


def read_interaction_file(path: Path) -> pd.DataFrame:
    """Read a split file: canonical CSV with a header, or headerless TSV as Elliot/RecBole write.

    The headerless form is `user, item, rating, timestamp` separated by tabs.
    """
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.suffix == ".parquet":
        return read_canonical_interactions(path)[0]
    with path.open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if "\t" in first and "user_id" not in first:
        frame = read_table(path, sep="\t", header=None, dtype=str)
        if frame.shape[1] < 2:
            raise DataError(f"{path} needs at least user and item columns")
        cols = list(frame.columns)
        frame, _ = interactions_frame(
            frame[cols[0]],
            frame[cols[1]],
            frame[cols[2]] if len(cols) > 2 else None,
            frame[cols[3]] if len(cols) > 3 else None,
            path,
            0,
        )
        return frame
    return read_canonical_interactions(path)[0]


def fixed_split(
    dataset: Dataset, train_file: Path, test_file: Path, drop_cold_items: bool = True
) -> Split:
    """Reproduce a published split exactly from its train and test files."""
    from whyrec.console import warn

    train = read_interaction_file(train_file)
    test = read_interaction_file(test_file)
    frames = []
    for label, frame in (("train", train), ("test", test)):
        known = frame["item_id"].isin(set(dataset.catalog.item_ids))
        if not known.any():
            raise DataError(f"no item of the {label} file is in the catalog of {dataset.name}")
        if (~known).any():
            warn(f"{int((~known).sum())} {label} rows name items outside the catalog; dropped")
        frames.append(frame[known])
    params = {"train_file": str(train_file), "test_file": str(test_file)}
    return _finish(dataset, frames[0], frames[1], "fixed", params, drop_cold_items)


def well_rated(frame: pd.DataFrame) -> pd.Series:
    """Rows a user rated at or above their own mean rating: the items they were glad to
    find. Without ratings (implicit data) every interaction counts."""
    ratings = pd.to_numeric(frame["rating"], errors="coerce")
    if ratings.isna().all():
        return pd.Series(True, index=frame.index)
    mean = ratings.groupby(frame["user_id"]).transform("mean")
    return (ratings >= mean) | ratings.isna()


def cold_users_split(
    dataset: Dataset, fraction: float, seed: int = 42, drop_cold_items: bool = True
) -> Split:
    """Hold out whole users: a seeded `fraction` of them leave training entirely, and their
    well-rated items become the test targets of users the model has never seen."""
    if not 0 < fraction < 1:
        raise DataError(f"--test-fraction must lie between 0 and 1, got {fraction}")
    frame = dataset.interactions
    users = np.sort(frame["user_id"].unique().astype(str))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(users, max(1, round(fraction * len(users))), replace=False))
    if len(held) >= len(users):
        raise DataError("a cold-users split needs at least two users")
    is_held = frame["user_id"].astype(str).isin(held).to_numpy()
    train, test = frame[~is_held], frame[is_held]
    test = test[well_rated(test).to_numpy()]
    dropped = {}
    if drop_cold_items:
        unseen = ~test["item_id"].isin(set(train["item_id"]))
        dropped["rows_of_items_not_in_train"] = int(unseen.sum())
        test = test[~unseen]
    if test.empty:
        raise DataError("the cold-users split leaves no target: raise --test-fraction")
    users_train = dataset.with_interactions(train, keep_users=False).user_ids
    return Split(
        train=Dataset(train, dataset.catalog, dataset.name, dataset.has_timestamps, users_train),
        test=Dataset(test, dataset.catalog, dataset.name, dataset.has_timestamps),
        method="cold-users",
        params={"seed": seed, "test_fraction": fraction},
        dropped=dropped,
    )
