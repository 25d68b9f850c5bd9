"""iALS and BPR (trained by `implicit`) and Rel-MF: fold-in, persistence, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from whyrec.data.splits import split
from whyrec.evaluation.protocol import EvaluationTarget, evaluate_model
from whyrec.models import BPR, IALS, MODELS, Popularity, RelMF, model_class
from whyrec.models.base import Recommender
from whyrec.models.relmf import propensities

SMALL = {"ials": {"factors": 16, "iterations": 5, "threads": 1}, "bpr": {"factors": 16}}


@pytest.fixture(scope="module")
def loo(ml_core):
    return split(ml_core, "loo", seed=0)


@pytest.fixture(scope="module")
def target(loo):
    return EvaluationTarget.from_split(loo)


@pytest.fixture(scope="module")
def ials(loo):
    return IALS(**SMALL["ials"]).fit(loo.train)


@pytest.fixture(scope="module")
def bpr(loo):
    return BPR(**SMALL["bpr"]).fit(loo.train)


@pytest.fixture(scope="module")
def relmf(loo):
    return RelMF(factors=16).fit(loo.train)


def test_registered():
    assert {"ials", "bpr", "relmf"} <= set(MODELS)
    assert model_class("als") is IALS and model_class("Rel-MF") is RelMF


def test_ials_fold_in_is_implicits_own_user_step(loo):
    """Our numpy fold-in equals implicit's recalculate_user on the same item factors."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = loo.train.matrix.astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        reference = AlternatingLeastSquares(
            factors=8, regularization=5.0, alpha=10.0, iterations=3, random_state=0, num_threads=1
        )
        reference.fit(matrix, show_progress=False)
    ours = IALS(factors=8, reg=5.0, alpha=10.0)
    ours.n_items_ = matrix.shape[1]
    ours.item_factors_ = np.asarray(reference.item_factors)
    users = np.arange(12)
    expected = reference.recalculate_user(users, matrix[users])
    np.testing.assert_allclose(ours.user_factors(matrix[users]), expected, rtol=1e-3, atol=1e-4)


def test_fold_in_of_a_list_equals_fold_in_of_the_matrix(loo, ials, bpr, relmf):
    histories = loo.train.histories()[:7]
    rows = loo.train.matrix[:7]
    for model in (ials, bpr, relmf):
        np.testing.assert_allclose(model.score(histories), model.score(rows), rtol=1e-5)


@pytest.mark.parametrize("name", ["ials", "bpr", "relmf"])
def test_save_load_gives_identical_scores(tmp_path, loo, name, request):
    model = request.getfixturevalue(name)
    model.save(tmp_path / name)
    assert not list((tmp_path / name).glob("*.pkl"))
    loaded = Recommender.load(tmp_path / name)
    assert type(loaded) is type(model) and loaded.config == model.config
    histories = loo.train.histories()[:25]
    np.testing.assert_array_equal(loaded.score(histories), model.score(histories))


@pytest.mark.parametrize("cls", [IALS, BPR, RelMF])
def test_same_seed_same_model(loo, cls):
    params = {**SMALL.get(cls.name, {}), "seed": 3}
    if cls is RelMF:
        params = {"factors": 8, "seed": 3}
    first, second = cls(**params).fit(loo.train), cls(**params).fit(loo.train)
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)


@pytest.mark.parametrize("name", ["ials", "bpr", "relmf"])
def test_untrained_items_are_unscorable_and_the_rest_finite(loo, name, request):
    model = request.getfixturevalue(name)
    scores = model.score(loo.train.histories()[:3])
    trained = loo.train.matrix.getnnz(axis=0) > 0
    assert np.isneginf(scores[:, ~trained]).all()
    assert np.isfinite(scores[:, trained]).all()


@pytest.mark.parametrize("name", ["ials", "relmf"])
def test_beats_popularity_on_loo(loo, target, name, request):
    model = request.getfixturevalue(name)
    result = evaluate_model(name, model, loo, [10], target=target, fitted=True)
    pop = evaluate_model("pop", Popularity(), loo, [10], target=target)
    assert result.summary["ndcg@10"].mean > pop.summary["ndcg@10"].mean


def test_bpr_mean_fold_in_is_the_mean_of_item_factors(bpr):
    history = np.array([4, 10, 30])
    expected = bpr.item_factors_[history].mean(axis=0)
    np.testing.assert_allclose(bpr.user_factors([history])[0], expected, rtol=1e-6)
    assert bpr.item_factors_.shape[1] == 16 and bpr.item_bias_.shape == (bpr.n_items_,)


def test_propensities_follow_the_paper():
    theta = propensities(np.array([100, 25, 1, 0]), power=0.5, clip=0.2)
    assert theta == pytest.approx([1.0, 0.5, 0.2, 0.2])  # sqrt(1/100) = 0.1 clipped to 0.2


def _relmf_objective(model: RelMF, matrix: sp.csr_matrix) -> float:
    """Σ (Y/θ' − ŷ)² + λ(‖U‖² + ‖V‖²) over all pairs, with U the optimal users for V."""
    targets = (matrix @ sp.diags(model.inverse_propensity_)).toarray()
    users = model.user_factors(matrix).astype(np.float64)
    items = model.item_factors_.astype(np.float64)
    residual = ((targets - users @ items.T) ** 2).sum()
    return residual + model.config.reg * ((users**2).sum() + (items**2).sum())


def test_relmf_als_decreases_its_clipped_ips_objective(loo):
    matrix = loo.train.matrix
    values = [
        _relmf_objective(RelMF(factors=8, iterations=n, seed=1).fit(loo.train), matrix)
        for n in (1, 3, 10)
    ]
    assert values[0] > values[1] > values[2]


def test_relmf_recommends_more_long_tail_than_ials(loo, target, ials, relmf):
    unbiased = evaluate_model("relmf", relmf, loo, [10], target=target, fitted=True)
    biased = evaluate_model("ials", ials, loo, [10], target=target, fitted=True)
    assert unbiased.summary["arp@10"].mean < biased.summary["arp@10"].mean
    assert unbiased.summary["aplt@10"].mean > biased.summary["aplt@10"].mean
