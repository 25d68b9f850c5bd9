"""The contract every registered model keeps (in the manner of scikit-learn's estimator
checks): fit and score shapes, a save/load round trip with identical scores, a clear
not-fitted error, determinism under a seed, and empty, cold and invalid histories.

Runs on a tiny synthetic catalog (some items nobody interacted with) with tiny
hyper-parameters, so every model fits in about a second. A new model is covered by
registering it; `TINY` only shrinks models whose defaults would be slow here.
"""

from __future__ import annotations

import numpy as np
import pytest

from gguf_helpers import gguf_path
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_directory
from whyrec.data.synth import SynthConfig, write_synthetic
from whyrec.errors import NotFittedError, WhyrecError
from whyrec.models import MODELS, Recommender, model_class

TINY: dict[str, dict] = {
    "ials": {"factors": 8, "iterations": 3, "threads": 1},
    "bpr": {"factors": 8, "iterations": 5, "threads": 1},
    "relmf": {"factors": 8, "iterations": 3},
    "text": {"dim": 8, "hidden": 16, "epochs": 1},
    "sasrec": {"dim": 8, "layers": 1, "epochs": 2, "max_len": 8, "device": "cpu"},
    "sasrec-text": {"dim": 8, "layers": 1, "epochs": 2, "max_len": 8, "device": "cpu"},
    "hybrid": {"first": "ease", "second": "itemknn"},
    "generative": {"dim": 8, "layers": 1, "epochs": 2, "max_len": 8, "quantizer_epochs": 20},
    "generative-llm": {"steps": 2, "batch_size": 2, "max_len": 4, "quantizer_epochs": 20},
}
NEEDS_GGUF = {"generative-llm"}
"""Checked here when the LLM's GGUF file is at hand (tests/test_generative_llm.py fails in
CI without it)."""
CONTRACT_MODELS = [name for name in MODELS if name not in NEEDS_GGUF or gguf_path()]
COLD_ITEMS = 6


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Dataset:
    """60 users over 80 items, the last COLD_ITEMS of which nobody interacted with."""
    folder = tmp_path_factory.mktemp("tiny")
    write_synthetic(SynthConfig(users=60, items=80, interactions=900, seed=5), folder, "csv")
    dataset = load_directory(folder, name="tiny")
    used = np.unique(dataset.codes[1])
    keep = used[: len(used) - COLD_ITEMS]
    frame = dataset.interactions
    frame = frame[frame["item_id"].isin([dataset.catalog.item_ids[p] for p in keep])]
    return Dataset(frame.reset_index(drop=True), dataset.catalog, name="tiny")


def build(name: str) -> Recommender:
    params = TINY.get(name, {})
    if name in NEEDS_GGUF:
        params = {**params, "gguf": gguf_path()}
    return model_class(name)(**params)


def sample_histories(dataset: Dataset) -> list[np.ndarray]:
    histories = dataset.histories()
    return [np.asarray(histories[u], dtype=np.int64) for u in (0, 7, 19)]


@pytest.fixture(scope="module")
def fitted(tiny) -> dict[str, Recommender]:
    return {name: build(name).fit(tiny) for name in CONTRACT_MODELS}


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_an_unfitted_model_says_so(name, tiny):
    model = build(name)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(sample_histories(tiny))


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_scores_have_one_row_per_history_and_one_column_per_item(name, tiny, fitted):
    model = fitted[name]
    histories = sample_histories(tiny)
    scores = model.score(histories)
    assert scores.shape == (len(histories), tiny.n_items)
    assert scores.dtype == np.float32
    assert not np.isnan(scores).any()
    assert np.isfinite(scores).any(axis=1).all()
    items = np.array([3, 0, tiny.n_items - 1])
    np.testing.assert_allclose(model.score(histories, items), scores[:, items], rtol=1e-5)


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_save_and_load_give_identical_scores(name, tiny, fitted, tmp_path):
    model = fitted[name]
    model.save(tmp_path / name)
    loaded = Recommender.load(tmp_path / name)
    assert type(loaded) is type(model)
    histories = sample_histories(tiny)
    np.testing.assert_array_equal(loaded.score(histories), model.score(histories))


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_the_same_seed_gives_the_same_model(name, tiny, fitted):
    again = build(name).fit(tiny)
    histories = sample_histories(tiny)
    np.testing.assert_allclose(again.score(histories), fitted[name].score(histories), rtol=1e-6)


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_empty_and_cold_histories_are_scored_without_error(name, tiny, fitted):
    """An empty history (a new user) and one of items nobody interacted with (an unknown
    taste) still get a full row: finite scores or -inf, never NaN or an exception."""
    model = fitted[name]
    cold = np.arange(tiny.n_items - COLD_ITEMS, tiny.n_items, dtype=np.int64)
    assert tiny.matrix[:, cold].nnz == 0
    scores = model.score([np.zeros(0, dtype=np.int64), cold[:3]])
    assert scores.shape == (2, tiny.n_items)
    assert not np.isnan(scores).any()


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_positions_outside_the_catalog_are_a_clear_error(name, tiny, fitted):
    with pytest.raises(WhyrecError, match="outside the catalog"):
        fitted[name].score([np.array([0, tiny.n_items + 5])])
