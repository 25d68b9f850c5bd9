"""SASRec and its ID-free variant on real data (small models, few epochs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranking_helpers import hit_rate, loo_ranks, ndcg
from whyrec.errors import WhyrecError
from whyrec.models import MODELS, Popularity, Recommender, SASRec, SASRecText

SMALL = {
    "dim": 32,
    "max_len": 30,
    "windows": "recent",
    "epochs": 10,
    "patience": 3,
    "batch_size": 32,
    "lr": 3e-3,
}


@pytest.fixture(scope="module")
def sasrec(core_loo):
    return SASRec(**SMALL).fit(core_loo.train)


@pytest.fixture(scope="module")
def sasrec_text(core_loo, core_item_vectors):
    return SASRecText(**SMALL).fit(core_loo.train)


def test_registered():
    assert MODELS["sasrec"] is SASRec and MODELS["sasrec-text"] is SASRecText
    assert SASRecText().config.item_vectors == "text"


def test_sasrec_beats_popularity(sasrec, core_loo):
    popularity = Popularity().fit(core_loo.train)
    ranks, pop_ranks = loo_ranks(sasrec, core_loo), loo_ranks(popularity, core_loo)
    assert hit_rate(ranks) > hit_rate(pop_ranks)
    assert ndcg(ranks) > ndcg(pop_ranks)


def test_early_stopping_keeps_the_best_validation_epoch(sasrec):
    scores = [h["val_ndcg"] for h in sasrec.history_]
    assert 1 <= len(scores) <= SMALL["epochs"]
    assert scores[sasrec.best_epoch_ - 1] == max(scores) > 0


def test_hidden_state_is_what_scores_are_read_from(sasrec, core_loo):
    histories = core_loo.train.histories()[:8]
    hidden = sasrec.hidden(histories)
    assert hidden.shape == (8, SMALL["dim"]) and np.isfinite(hidden).all()
    scores = sasrec.score(histories)
    trained = sasrec.trained_items_
    np.testing.assert_allclose(
        scores[:, trained], (hidden @ sasrec.item_matrix_.T)[:, trained], rtol=1e-5, atol=1e-5
    )


def test_order_matters(sasrec, core_loo):
    history = core_loo.train.histories()[0][-20:]
    assert not np.allclose(sasrec.score([history]), sasrec.score([history[::-1]]))


def test_id_model_does_not_rank_untrained_items(sasrec, core_loo):
    cold = np.flatnonzero(core_loo.train.item_popularity() == 0)
    assert np.isneginf(sasrec.score([core_loo.train.histories()[0]])[0][cold]).all()


def test_text_variant_recommends_a_never_seen_item_after_its_text_neighbours(
    sasrec_text, core_loo, core_item_vectors
):
    popularity = core_loo.train.item_popularity()
    cold = np.flatnonzero(popularity == 0)
    warm = np.flatnonzero(popularity > 0)
    placed = []
    for item in cold:
        # A history of the ten warm items whose text is closest to the new item's text.
        neighbours = warm[np.argsort(-(core_item_vectors[warm] @ core_item_vectors[item]))[:10]]
        scores = sasrec_text.score([neighbours[::-1]])[0]
        scores[neighbours] = -np.inf
        placed.append(int((scores > scores[item]).sum()))
    placed = np.array(placed)
    n_items = len(popularity)
    # New items reach the top 10 % of a ~1,300-item catalog far more often than chance.
    assert np.isfinite(sasrec_text.score([warm[:5]])[0][cold]).all()
    assert (placed < n_items // 10).mean() >= 0.5
    assert (placed < 20).any()


def test_save_load_roundtrip_gives_identical_scores(sasrec, sasrec_text, core_loo, tmp_path):
    histories = core_loo.train.histories()[:10]
    for model in (sasrec, sasrec_text):
        model.save(tmp_path / model.name)
        loaded = Recommender.load(tmp_path / model.name)
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.score(histories), model.score(histories))
        np.testing.assert_array_equal(loaded.hidden(histories), model.hidden(histories))


def test_same_seed_same_model_with_sampled_negatives(core_loo):
    params = {**SMALL, "epochs": 2, "dim": 16, "loss": "bce", "negatives": 4, "seed": 5}
    first = SASRec(**params).fit(core_loo.train)
    second = SASRec(**params).fit(core_loo.train)
    histories = core_loo.train.histories()[:10]
    assert np.isfinite([h["loss"] for h in first.history_]).all()
    np.testing.assert_array_equal(first.score(histories), second.score(histories))
    other = SASRec(**{**params, "seed": 6}).fit(core_loo.train)
    assert not np.array_equal(first.score(histories), other.score(histories))


def test_invalid_settings_are_clear_errors(core_loo):
    with pytest.raises(WhyrecError, match="loss"):
        SASRec(loss="hinge")
    with pytest.raises(WhyrecError, match="divisible"):
        SASRec(dim=30, heads=4).fit(core_loo.train)
    with pytest.raises(WhyrecError, match="device"):
        SASRec(device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_clear_error(core_loo):
    with pytest.raises(WhyrecError, match="no GPU"):
        SASRec(device="cuda", epochs=1, windows="recent").fit(core_loo.train)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_training_scores_on_the_cpu(core_loo, tmp_path):
    model = SASRec(device="cuda", epochs=2, seed=1, windows="recent").fit(core_loo.train)
    assert next(model.network_.parameters()).device.type == "cpu"
    histories = core_loo.train.histories()[:5]
    model.save(tmp_path / "m")
    np.testing.assert_allclose(
        type(model).load(tmp_path / "m").score(histories), model.score(histories), rtol=1e-5
    )
