"""Score blending of two registered models."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.errors import WhyrecError
from whyrec.models import EASE, MODELS, Hybrid, Popularity, Recommender
from whyrec.models.hybrid import zscore_rows


def ranking(scores: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(scores.shape[-1]), -scores))


def test_registered():
    assert MODELS["hybrid"] is Hybrid


def test_zscores_per_row_over_finite_entries():
    scores = np.array([[1.0, 2.0, 3.0, -np.inf], [5.0, 5.0, 5.0, 5.0], [-np.inf] * 4])
    z, finite = zscore_rows(scores)
    np.testing.assert_allclose(z[0, :3], [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    assert z[0, 3] == z[0, :3].min()  # unscorable: the row's lowest z, not -inf
    np.testing.assert_array_equal(z[1], 0.0)  # constant rows carry no preference
    np.testing.assert_array_equal(finite[2], False)


def test_alpha_extremes_reproduce_each_model(core_loo):
    histories = core_loo.train.histories()[:15]
    popularity = Popularity().fit(core_loo.train)
    ease = EASE(reg=100.0).fit(core_loo.train)
    only_first = Hybrid(first="popularity", second="ease", second_params={"reg": 100.0}, alpha=1.0)
    only_second = Hybrid(first="popularity", second="ease", second_params={"reg": 100.0}, alpha=0.0)
    only_first.fit(core_loo.train)
    only_second.fit(core_loo.train)
    warm = np.flatnonzero(core_loo.train.item_popularity() > 0)
    first, second = only_first.score(histories), only_second.score(histories)
    expected_first, expected_second = popularity.score(histories), ease.score(histories)
    for row in range(len(histories)):
        np.testing.assert_array_equal(ranking(first[row][warm]), ranking(expected_first[row][warm]))
        np.testing.assert_array_equal(
            ranking(second[row][warm]), ranking(expected_second[row][warm])
        )


def test_blend_of_ease_and_text_scores_cold_items_and_roundtrips(
    core_loo, core_item_vectors, tmp_path
):
    hybrid = Hybrid(
        first="ease",
        first_params={"reg": 100.0},
        second="text",
        second_params={"epochs": 1, "mapping": "linear", "dim": 16},
        alpha=0.7,
    ).fit(core_loo.train)
    histories = core_loo.train.histories()[:12]
    scores = hybrid.score(histories)
    cold = np.flatnonzero(core_loo.train.item_popularity() == 0)
    assert np.isneginf(hybrid.first_.score(histories)[:, cold]).all()
    assert np.isfinite(scores).all()  # the text model speaks for items EASE cannot score
    items = np.array([0, 5, int(cold[0])])
    np.testing.assert_array_equal(hybrid.score(histories, items), scores[:, items])

    hybrid.save(tmp_path / "hybrid")
    assert (tmp_path / "hybrid" / "first" / "model.json").exists()
    assert (tmp_path / "hybrid" / "second" / "model.json").exists()
    loaded = Recommender.load(tmp_path / "hybrid")
    assert isinstance(loaded, Hybrid) and loaded.config == hybrid.config
    np.testing.assert_array_equal(loaded.score(histories), scores)


def test_unknown_part_is_a_clear_error(core_loo):
    with pytest.raises(WhyrecError, match="unknown model"):
        Hybrid(first="nope", second="ease").fit(core_loo.train)
    with pytest.raises(WhyrecError, match="alpha"):
        Hybrid(alpha=1.5)
    with pytest.raises(WhyrecError, match="JSON"):
        Hybrid(first_params="{reg: 1}")


def test_parameters_given_as_json_text_like_the_cli_does():
    hybrid = Hybrid(first="ease", first_params='{"reg": 100.0}', alpha="0.3")
    assert hybrid.config.first_params == {"reg": 100.0} and hybrid.config.alpha == 0.3
