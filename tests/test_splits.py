"""Splits: seeded, leak-free, and each method's defining property."""

from __future__ import annotations

import pandas as pd
import pytest

from whyrec.data.splits import split
from whyrec.errors import DataError


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))


@pytest.mark.parametrize("method", ["loo", "user-temporal", "temporal", "random"])
def test_no_test_interaction_in_train(ml_small, method):
    result = split(ml_small, method, seed=3)
    assert not _pairs(result.train.interactions) & _pairs(result.test.interactions)
    assert set(result.test.interactions["user_id"]) <= set(result.train.interactions["user_id"])
    assert set(result.test.interactions["item_id"]) <= set(result.train.interactions["item_id"])
    assert list(result.train.user_ids) == list(result.test.user_ids)


def test_loo_holds_exactly_the_latest_item(ml_small):
    result = split(ml_small, "loo", seed=0)
    per_user = result.test.interactions.groupby("user_id").size()
    assert (per_user == 1).all()
    latest = ml_small.interactions.groupby("user_id")["timestamp"].max()
    test = result.test.interactions.set_index("user_id")["timestamp"]
    assert (test == latest.loc[test.index]).all()
    # the held-out item leaves train even when its test row is dropped as a cold item
    sizes = ml_small.interactions.groupby("user_id").size()
    train_sizes = result.train.interactions.groupby("user_id").size()
    assert (train_sizes == sizes.loc[train_sizes.index] - 1).all()
    assert result.dropped["rows_of_items_not_in_train"] == len(sizes) - len(per_user)


def test_user_temporal_tests_after_train_per_user(ml_small):
    result = split(ml_small, "user-temporal", test_fraction=0.2, seed=0)
    train_last = result.train.interactions.groupby("user_id")["timestamp"].max()
    test_first = result.test.interactions.groupby("user_id")["timestamp"].min()
    assert (test_first >= train_last.loc[test_first.index]).all()
    share = len(result.test) / len(ml_small)
    assert 0.15 < share < 0.25


def test_temporal_is_a_global_cut(ml_small):
    result = split(ml_small, "temporal", test_fraction=0.2)
    assert (
        result.test.interactions["timestamp"].min() >= result.train.interactions["timestamp"].max()
    )
    assert result.dropped["users_not_in_train"] > 0  # new users after the cut are dropped


def test_random_is_seeded(ml_small):
    first = split(ml_small, "random", seed=7).test.interactions
    again = split(ml_small, "random", seed=7).test.interactions
    other = split(ml_small, "random", seed=8).test.interactions
    assert _pairs(first) == _pairs(again)
    assert _pairs(first) != _pairs(other)


def test_fixed_split_from_elliot_tsv_and_csv(ml_small, tmp_path, capsys):
    frame = ml_small.interactions
    train = frame[frame["user_id"] != "5"].iloc[:-50]
    test = pd.concat([frame.iloc[-50:], frame[frame["user_id"] == "5"].head(3)])
    train[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        tmp_path / "train.tsv", sep="\t", header=False, index=False
    )
    test.to_csv(tmp_path / "test.csv", index=False)
    result = split(
        ml_small, "fixed", train_file=tmp_path / "train.tsv", test_file=tmp_path / "test.csv"
    )
    assert len(result.train) == len(train)
    assert result.dropped["users_not_in_train"] == 1
    assert "5" not in set(result.test.interactions["user_id"])
    assert "dropped" in capsys.readouterr().err


def test_bad_split_requests(ml_small, tmp_path):
    with pytest.raises(DataError, match="unknown split method"):
        split(ml_small, "yesterday")
    with pytest.raises(DataError, match="needs both"):
        split(ml_small, "fixed")
    with pytest.raises(DataError, match="file not found"):
        split(ml_small, "fixed", train_file=tmp_path / "a", test_file=tmp_path / "b")
