"""Popularity and EASE: exact maths, decomposition, persistence, and a sanity ranking check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.data.splits import split
from whyrec.errors import BundleError, WhyrecError
from whyrec.models import EASE, Popularity, Recommender, model_class
from whyrec.ranking import top_k


def _tiny_dataset() -> Dataset:
    """4 users, 4 items; item 'd' is in the catalog but never interacted with."""
    rows = [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "c"),
        ("u3", "b"),
        ("u3", "c"),
        ("u4", "a"),
        ("u4", "b"),
        ("u4", "c"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(rating=np.nan)
    frame["timestamp"] = np.arange(len(frame))
    catalog = Catalog(["a", "b", "c", "d"], ["A", "B", "C", "D"], np.full(4, np.nan))
    return Dataset(frame, catalog)


def test_ease_matches_hand_computation():
    data = _tiny_dataset()
    model = EASE(reg=1.0).fit(data)
    x = data.matrix.toarray()[:, :3].astype(np.float64)
    p = np.linalg.inv(x.T @ x + np.eye(3))
    expected = -p / np.diag(p)[np.newaxis, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-5, atol=1e-6)
    assert model.weights_.flags.c_contiguous  # scoring must not copy the matrix
    # by hand: G + I = 2I + 2J (J all ones), so P = (I - J/4)/2: diagonal 3/8, off -1/8,
    # and B_ab = -P_ab / P_bb = (1/8) / (3/8) = 1/3.
    assert model.weights_[0, 1] == pytest.approx(1 / 3, rel=1e-5)
    scores = model.score([np.array([0])])[0]
    assert scores[1] == pytest.approx(1 / 3, rel=1e-5)
    assert scores[3] == -np.inf  # never-seen items cannot be scored


def test_popularity_counts_distinct_users():
    model = Popularity().fit(_tiny_dataset())
    np.testing.assert_array_equal(model.score([np.array([0]), np.array([])])[1], [3, 3, 3, 0])


def test_ease_contributions_sum_to_score(ml_core):
    model = EASE(reg=100.0).fit(ml_core)
    history = np.unique(ml_core.history(ml_core.user_ids[0]))
    items = np.arange(ml_core.n_items)[::97]
    contrib = model.contributions(history, items)
    scores = model.score([history], items)[0]
    finite = np.isfinite(scores)
    np.testing.assert_allclose(contrib.sum(axis=1)[finite], scores[finite], rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip_keeps_scores(ml_core, tmp_path):
    for model in (EASE(reg=300.0).fit(ml_core), Popularity().fit(ml_core)):
        model.save(tmp_path / model.name)
        loaded = Recommender.load(tmp_path / model.name)
        assert loaded.config == model.config
        histories = ml_core.histories()[:5]
        np.testing.assert_array_equal(loaded.score(histories), model.score(histories))


def test_model_format_mismatch_is_a_clear_error(ml_core, tmp_path):
    Popularity().fit(ml_core).save(tmp_path)
    meta = (tmp_path / "model.json").read_text().replace('"format": 1', '"format": 99')
    (tmp_path / "model.json").write_text(meta)
    with pytest.raises(BundleError, match="model format 99"):
        Recommender.load(tmp_path)


def test_invalid_parameters_and_names():
    with pytest.raises(WhyrecError, match="reg"):
        EASE(reg=-1)
    with pytest.raises(WhyrecError, match="invalid parameters"):
        EASE(lambda_=3)
    with pytest.raises(WhyrecError, match="unknown model"):
        model_class("svd++")


def test_ease_beats_popularity_on_loo(ml_core):
    data = split(ml_core, "loo", seed=0)
    test_rows = data.test.codes[0]
    truth = dict(zip(*data.test.codes, strict=True))
    histories = data.train.histories()

    def hit_rate(model) -> float:
        scores = model.fit(data.train).score([histories[u] for u in test_rows])
        hits = 0
        for row, user in enumerate(test_rows):
            allowed = np.ones(ml_core.n_items, bool)
            allowed[histories[user]] = False
            hits += truth[user] in top_k(scores[row], 10, allowed)
        return hits / len(test_rows)

    ease, pop = hit_rate(EASE(reg=250.0)), hit_rate(Popularity())
    assert ease > pop * 1.3, (ease, pop)
