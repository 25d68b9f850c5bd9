"""Sparse-autoencoder interpretation (RecSAE) on real data with small models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import run
from whyrec.bundle import Bundle
from whyrec.errors import WhyrecError
from whyrec.interpret import (
    PROBED_MODELS,
    ConceptConfig,
    InterpretConfig,
    NoProbePointError,
    SAEConfig,
    SparseAutoencoder,
    SteeredModel,
    interpret_bundle,
    probe_for,
    summary,
)
from whyrec.interpret.concepts import DictionaryBuilder
from whyrec.interpret.probe import prefix_sample
from whyrec.models import EASE, IALS, SASRec

TINY_SASREC = {"dim": 16, "max_len": 20, "epochs": 3, "patience": 1, "batch_size": 64}
SMALL_SAE = {"latents": 64, "k": 4, "epochs": 6, "batch_size": 128}


@pytest.fixture(scope="module")
def sasrec_bundle(core_loo, tmp_path_factory):
    """A tiny SASRec trained on the 20-core data, saved and loaded as a real bundle."""
    model = SASRec(**TINY_SASREC).fit(core_loo.train)
    folder = tmp_path_factory.mktemp("bundles") / "sasrec"
    Bundle(model, core_loo.train, {"holdout": "loo"}, test=core_loo.test).save(folder)
    return folder


@pytest.fixture(scope="module")
def sasrec(sasrec_bundle):
    return Bundle.load(sasrec_bundle)


@pytest.fixture(scope="module")
def ials(core_loo):
    return IALS(factors=16, iterations=5, threads=1).fit(core_loo.train)


@pytest.fixture(scope="module")
def sample(core_loo):
    return prefix_sample(core_loo.train.histories(), per_user=10)


@pytest.fixture(scope="module")
def sae(sasrec, core_loo):
    probe = probe_for(sasrec.model)
    vectors = probe.training_vectors(core_loo.train.histories())
    return SparseAutoencoder(**SMALL_SAE).fit(vectors), vectors


@pytest.fixture(scope="module")
def result(sasrec):
    config = InterpretConfig(
        sae=SAEConfig(**SMALL_SAE), prefixes_per_user=10, ablate_top=5, ablation_sequences=50
    )
    return interpret_bundle(sasrec, config, ablate=[0], boost=[1])


# ----- probe points ------------------------------------------------------------------------
def test_probe_scores_are_the_models_own(sasrec, ials, sample):
    histories = sample.histories[:40]
    for model in (sasrec.model, ials):
        probe = probe_for(model)
        np.testing.assert_array_equal(probe.score(histories), model.score(histories))


def test_text_model_has_a_probe(core_loo, core_item_vectors):
    from whyrec.models import TextRecommender

    model = TextRecommender(epochs=1, mapping="linear").fit(core_loo.train)
    probe = probe_for(model)
    histories = core_loo.train.histories()[:10]
    vectors = probe.vectors(histories)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probe.score(histories), model.score(histories))


def test_sasrec_trains_on_every_position_and_analyses_the_last(sasrec, core_loo):
    probe = probe_for(sasrec.model)
    histories = core_loo.train.histories()[:5]
    every = probe.training_vectors(histories)
    assert len(every) == sum(min(len(h), TINY_SASREC["max_len"]) for h in histories)
    # a full window's last position is the model's own last hidden state
    full = [h[-TINY_SASREC["max_len"] :] for h in histories]
    np.testing.assert_allclose(every[len(full[0]) - 1], probe.vectors(full[:1])[0], atol=1e-5)


def test_a_model_without_probe_point_names_those_with_one(core_loo):
    with pytest.raises(NoProbePointError) as error:
        probe_for(EASE().fit(core_loo.train))
    assert "'ease' has no probe point" in str(error.value)
    assert all(name in str(error.value) for name in PROBED_MODELS)


# ----- the autoencoder --------------------------------------------------------------------
def test_decoder_rows_have_unit_norm(sae):
    model, _ = sae
    norms = model.network_.decoder.detach().norm(dim=1).numpy()
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_codes_are_top_k_sparse_and_non_negative(sae):
    model, vectors = sae
    codes = model.encode(vectors[:500])
    assert (codes >= 0).all()
    assert ((codes > 0).sum(axis=1) <= SMALL_SAE["k"]).all()
    assert (codes > 0).sum(axis=1).mean() > SMALL_SAE["k"] - 1


def test_fvu_decreases_while_training(sae):
    model, vectors = sae
    fvus = [h["fvu"] for h in model.history_]
    assert fvus[-1] < fvus[0] and fvus[-1] < 0.8
    assert abs(model.fvu(vectors) - fvus[-1]) < 0.1


def test_auxiliary_loss_works_on_dead_latents_and_few_stay_dead(sae):
    _, vectors = sae
    model = SparseAutoencoder(**{**SMALL_SAE, "latents": 256, "dead_after": 512}).fit(vectors)
    assert any(h["aux_loss"] > 0 for h in model.history_)  # latents fell dead and were trained
    assert ((model.encode(vectors) > 0).sum(axis=0) == 0).mean() < 0.1


def test_save_and_load_give_the_same_codes(sae, tmp_path):
    model, vectors = sae
    model.save(tmp_path / "sae")
    loaded = SparseAutoencoder.load(tmp_path / "sae")
    np.testing.assert_array_equal(loaded.encode(vectors[:100]), model.encode(vectors[:100]))


# ----- steering ---------------------------------------------------------------------------
def test_no_edit_keeps_the_model_exact(sasrec, sae, sample):
    model, _ = sae
    probe = probe_for(sasrec.model)
    histories = sample.histories[:30]
    steered = SteeredModel(probe, model).scale(3, 1.0)
    np.testing.assert_array_equal(steered.score(histories), sasrec.model.score(histories))


def test_ablation_moves_only_along_that_latent(sasrec, sae, sample):
    model, _ = sae
    probe = probe_for(sasrec.model)
    vectors = probe.vectors(sample.histories[:300])
    codes = model.encode(vectors)
    latent = int(np.argmax((codes > 0).sum(axis=0)))
    change = SteeredModel(probe, model).ablate(latent).edit(vectors) - vectors
    direction = model.directions()[latent]
    active = codes[:, latent] > 0
    assert active.any() and not active.all()
    np.testing.assert_allclose(change[~active], 0.0)
    expected = -codes[active, latent][:, None] * direction[None, :]
    np.testing.assert_allclose(change[active], expected, rtol=1e-4, atol=1e-5)


def test_unknown_latent_is_a_clear_error(sasrec, sae):
    model, _ = sae
    with pytest.raises(WhyrecError, match="unknown latent 64: the autoencoder has 64 latents"):
        SteeredModel(probe_for(sasrec.model), model).ablate(64)


# ----- concepts and the whole run ---------------------------------------------------------
def test_label_and_verification_users_are_disjoint(result):
    dictionary = result.dictionary
    assert len(np.intersect1d(dictionary.build_users, dictionary.verify_users)) == 0
    build = set(dictionary.build_users.tolist())
    for concept in dictionary.concepts:
        assert all(example["user"] in build for example in concept.examples)


def test_confidence_combines_precision_and_recall(result):
    ranked = result.dictionary.ranked()
    assert ranked, "no latent was labelled and verified"
    for concept in ranked:
        assert 0 <= concept.precision <= 1 and 0 <= concept.recall <= 1
        if concept.precision + concept.recall:
            expected = 2 * concept.precision * concept.recall / (concept.precision + concept.recall)
            assert concept.confidence == pytest.approx(expected)
        assert concept.label and concept.features
    confidences = [c.confidence for c in ranked]
    assert confidences == sorted(confidences, reverse=True)


def test_summary_has_the_promised_keys(result):
    data = summary(result)
    for key in (
        "model",
        "latents",
        "k",
        "fvu",
        "dead_fraction",
        "ndcg@10_original",
        "ndcg@10_reconstructed",
        "confident_latents",
        "concepts",
        "ablation",
    ):
        assert key in data
    assert data["model"] == "sasrec" and data["latents"] == 64 and data["k"] == 4
    assert data["ndcg@10_original"] > 0 and data["ndcg@10_reconstructed"] > 0
    for concept in data["concepts"]:
        assert {"latent", "label", "confidence", "precision", "recall"} <= set(concept)
    for shift in data["ablation"] + data["steering"]:
        assert {
            "latent",
            "label",
            "concept_share_before",
            "concept_share_after",
            "other_share_before",
            "other_share_after",
        } <= set(shift)
    assert [s["edit"] for s in data["steering"]] == ["ablate", "boost"]
    json.dumps(data)


def test_boosting_raises_the_concept_share(result):
    boost = result.steering[1]
    assert boost.items_changed > 0
    assert boost.concept_share_after >= boost.concept_share_before


def test_misbehaving_llm_predictor_is_counted_not_fatal(sasrec, sae, sample, core_loo):
    model, _ = sae
    codes = model.encode(probe_for(sasrec.model).vectors(sample.histories))
    calls = {"n": 0}

    def flaky(label: str, titles: list[str]):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise TimeoutError("remote model timed out")
        return "yes" if calls["n"] % 3 == 1 else bool(titles)

    def labeler(concept):
        raise RuntimeError("no LLM today")

    builder = DictionaryBuilder(
        core_loo.train.catalog, ConceptConfig(), 20, labeler=labeler, predictor=flaky
    )
    dictionary = builder.build(sample, codes)
    assert calls["n"] > 0 and dictionary.predictor_failures == pytest.approx(
        2 * calls["n"] / 3, abs=1
    )
    assert all(c.label for c in dictionary.ranked())


def test_too_few_sequences_for_the_dictionary(sasrec):
    config = InterpretConfig(sae=SAEConfig(latents=100_000, k=8, epochs=1))
    with pytest.raises(WhyrecError, match="use --latents"):
        interpret_bundle(sasrec, config)


# ----- the command --------------------------------------------------------------------------


def test_cli_writes_report_and_summary(sasrec_bundle, tmp_path, capsys):
    report = tmp_path / "out" / "report.html"
    argv = ["interpret", "--bundle", str(sasrec_bundle), "--out", str(report)]
    code, out, _ = run(
        capsys, *argv, "--latents", "32", "--k", "4", "--epochs", "3", "--ablate", "5"
    )
    assert code == 0 and "ablate latent 5" in out
    data = json.loads((report.parent / "summary.json").read_text())
    assert data["latents"] == 32 and data["steering"][0]["latent"] == 5
    page = report.read_text()
    assert "data:image/png;base64," in page and "Requested steering" in page


def test_cli_bad_inputs_are_one_line(sasrec_bundle, core_loo, tmp_path, capsys):
    report = str(tmp_path / "r.html")
    code, _, err = run(
        capsys, "interpret", "--bundle", str(sasrec_bundle), "--out", report, "--ablate", "5000"
    )
    assert code == 2 and "unknown latent 5000" in err and len(err.strip().splitlines()) == 1
    ease = tmp_path / "ease"
    Bundle(EASE().fit(core_loo.train), core_loo.train).save(ease)
    code, _, err = run(capsys, "interpret", "--bundle", str(ease), "--out", report)
    assert code == 2 and "has no probe point" in err
