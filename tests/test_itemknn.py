"""ItemKNN: shrunk cosine by hand, pruning, exact contributions, persistence, quality."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from whyrec.data.splits import split
from whyrec.evaluation.protocol import EvaluationTarget, evaluate_model
from whyrec.models import MODELS, ItemKNN, Popularity, model_class
from whyrec.models.base import Recommender
from whyrec.models.itemknn import cosine_neighbours


@pytest.fixture(scope="module")
def loo(ml_core):
    return split(ml_core, "loo", seed=0)


@pytest.fixture(scope="module")
def fitted(loo):
    return ItemKNN(neighbors=50, shrink=10).fit(loo.train)


def test_registered_under_its_name():
    assert MODELS["itemknn"] is ItemKNN
    assert model_class("knn") is ItemKNN


def test_shrunk_cosine_by_hand():
    # users × items; item 0 has users {0,1,2}, item 1 {0,1}, item 2 {2}
    matrix = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    weights = cosine_neighbours(matrix, neighbors=2, shrink=1.0).toarray()
    assert weights[0, 1] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2) + 1))
    assert weights[0, 2] == pytest.approx(1 / (np.sqrt(3) * 1 + 1))
    assert weights[1, 2] == 0.0  # never co-occur
    assert np.allclose(weights, weights.T)  # symmetric before pruning binds
    assert np.diag(weights).tolist() == [0.0, 0.0, 0.0]


def test_each_target_keeps_at_most_k_neighbours(fitted):
    per_target = fitted.weights_.getnnz(axis=0)
    assert per_target.max() <= 50
    assert (fitted.weights_.data > 0).all()
    assert fitted.weights_.diagonal().max() == 0.0


def test_pruning_keeps_the_strongest_neighbours(loo):
    full = ItemKNN(neighbors=100_000, shrink=10).fit(loo.train).weights_.toarray()
    pruned = ItemKNN(neighbors=5, shrink=10).fit(loo.train).weights_.toarray()
    column = int(np.argmax((full > 0).sum(axis=0)))
    kept = np.flatnonzero(pruned[:, column])
    assert len(kept) == 5
    assert full[kept, column].min() >= np.sort(full[:, column])[-5] - 1e-6


def test_contributions_sum_to_the_score(loo, fitted):
    history = np.unique(loo.train.histories()[3])
    scores = fitted.score([history])[0]
    items = np.flatnonzero(np.isfinite(scores))[:40]
    parts = fitted.contributions(history, items)
    assert parts.shape == (len(items), len(history))
    np.testing.assert_allclose(parts.sum(axis=1), scores[items], rtol=1e-5, atol=1e-6)
    assert parts.sum() > 0


def test_items_without_training_data_are_unscorable(loo, fitted):
    cold = np.flatnonzero(loo.train.matrix.getnnz(axis=0) == 0)
    assert len(cold) > 0
    assert np.isneginf(fitted.score([loo.train.histories()[0]])[0, cold]).all()


def test_save_load_gives_identical_scores(tmp_path, loo, fitted):
    fitted.save(tmp_path / "knn")
    loaded = Recommender.load(tmp_path / "knn")
    assert isinstance(loaded, ItemKNN) and loaded.config == fitted.config
    histories = loo.train.histories()[:20]
    np.testing.assert_array_equal(loaded.score(histories), fitted.score(histories))
    items = np.array([0, 5, 17])
    np.testing.assert_array_equal(
        loaded.contributions(histories[0], items), fitted.contributions(histories[0], items)
    )


def test_beats_popularity_on_loo(loo, fitted):
    target = EvaluationTarget.from_split(loo)
    knn = evaluate_model("itemknn", fitted, loo, [10], target=target, fitted=True)
    pop = evaluate_model("pop", Popularity(), loo, [10], target=target)
    assert knn.summary["ndcg@10"].mean > pop.summary["ndcg@10"].mean
    assert knn.summary["coverage@10"].mean > 2 * pop.summary["coverage@10"].mean


def test_invalid_parameters_are_user_errors():
    from whyrec.errors import WhyrecError

    with pytest.raises(WhyrecError, match="neighbors"):
        ItemKNN(neighbors=0)
    with pytest.raises(WhyrecError):
        ItemKNN(k=5)


def test_history_order_and_repeats_do_not_change_scores(fitted):
    repeated = np.array([5, 9, 5, 2])
    distinct = np.array([2, 5, 9])
    np.testing.assert_array_equal(fitted.score([repeated]), fitted.score([distinct]))
