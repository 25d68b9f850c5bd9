"""Generative recommendation with semantic indices, on real data (small models, few epochs)."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cli_helpers import run, write_canonical
from ranking_helpers import hit_rate, loo_ranks, ndcg
from whyrec.bundle import Bundle
from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.data.synth import SynthConfig, interaction_blocks
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.explain.attribution import GENERATION_PATH
from whyrec.explain.fidelity import explanation_fidelity
from whyrec.explain.render import sentences
from whyrec.models import MODELS, Popularity
from whyrec.models.generative import Generative
from whyrec.models.generative.indexing import build_index, codebook_size
from whyrec.models.generative.model import (
    fit_backoff_share,
    learning_rate_schedule,
    uniform_backoff,
)
from whyrec.models.generative.trie import Trie

SMALL = {
    "dim": 32,
    "max_len": 30,
    "windows": "recent",
    "epochs": 10,
    "lr": 1e-2,  # ten epochs of one window per user: the default 3e-3 plans for all windows
    "patience": 10,
    "validation_users": 50,
    "quantizer_epochs": 60,
}


@pytest.fixture(scope="module")
def generative(core_loo, core_item_vectors):
    return Generative(**SMALL).fit(core_loo.train)


def test_registered():
    assert MODELS["generative"] is Generative


def test_every_item_has_its_own_index(generative, core_loo):
    codes = np.asarray(generative.codes_)
    n_items = core_loo.train.n_items
    assert codes.shape[0] == n_items
    assert len(np.unique(codes, axis=0)) == n_items  # no two items share an index
    assert (codes < generative.sizes_[None, :]).all()
    trie = generative.trie_
    assert sorted(trie.leaf_items.tolist()) == list(range(n_items))
    size = codebook_size(n_items, SMALL.get("levels", 3))
    assert list(generative.sizes_[:3]) == [size] * 3


def test_generative_beats_popularity(generative, core_loo):
    popularity = Popularity().fit(core_loo.train)
    ranks, pop_ranks = loo_ranks(generative, core_loo), loo_ranks(popularity, core_loo)
    assert hit_rate(ranks) > hit_rate(pop_ranks)
    assert ndcg(ranks) > ndcg(pop_ranks)


def test_item_probabilities_add_up_to_one(generative, core_loo):
    scores = generative.score(core_loo.train.histories()[:3])
    np.testing.assert_allclose(np.exp(scores.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-4)


def test_beam_search_generates_real_unseen_items_scored_as_in_score(generative, core_loo):
    history = core_loo.train.histories()[5]
    generated = generative.generate(history, k=10, beam=20)
    assert len(generated.positions) == 10 and len(set(generated.positions.tolist())) == 10
    assert not np.isin(generated.positions, history).any()
    np.testing.assert_array_equal(
        np.asarray(generative.codes_)[generated.positions], generated.codes
    )
    exact = generative.score([history])[0][generated.positions]
    np.testing.assert_allclose(generated.log_probs, exact, rtol=1e-4, atol=1e-4)
    assert (np.diff(generated.log_probs) <= 1e-9).all()


def test_a_beam_as_wide_as_the_catalog_is_the_exhaustive_search(generative, core_loo):
    history = core_loo.train.histories()[9]
    unseen = core_loo.train.n_items - len(np.unique(history))
    generated = generative.generate(history, k=unseen, beam=core_loo.train.n_items)
    scores = generative.score([history])[0]
    scores[history] = -np.inf
    assert len(generated.positions) == unseen  # cold items included: every unseen item
    expected = np.lexsort((np.arange(len(scores)), -scores))[:unseen]
    top = 50
    np.testing.assert_array_equal(generated.positions[:top], expected[:top])


def test_cold_items_get_indices_next_to_similar_items_and_can_be_generated(generative, core_loo):
    train = core_loo.train
    cold = np.flatnonzero(train.item_popularity() == 0)
    assert len(cold) >= 20
    scores = generative.score(train.histories()[:4])
    assert np.isfinite(scores[:, cold]).all()
    # the warm items sharing a cold item's first two index levels are more often animated
    # films when the cold item is one (it was indexed from its text)
    codes = np.asarray(generative.codes_)
    animation = train.catalog.mask_with_value("genres", ["Animation"])
    warm = train.item_popularity() > 0

    def animated_neighbours(items: np.ndarray) -> float:
        shares = []
        for item in items.tolist():
            same = warm & (codes[:, :2] == codes[item, :2]).all(axis=1)
            if same.any():
                shares.append(animation[same].mean())
        return float(np.mean(shares))

    assert animated_neighbours(cold[animation[cold]]) > animated_neighbours(cold[~animation[cold]])


@pytest.mark.parametrize("kind", ["sequential", "semantic", "collaborative", "hybrid"])
def test_every_indexing_choice_gives_unique_indices(kind, core_loo, core_item_vectors):
    train = core_loo.train
    index = build_index(train, kind, 3, None, 16, 16, 40, 0, core_item_vectors)
    assert len(np.unique(index.codes, axis=0)) == train.n_items
    assert all(0 < share <= 1 for share in index.utilisation())
    Trie.build(index.codes, index.sizes)  # a valid prefix tree


def tiny_dataset(with_text: bool) -> Dataset:
    config = SynthConfig(users=60, items=40, interactions=900, seed=3)
    interactions = pd.concat(interaction_blocks(config), ignore_index=True)
    interactions["user_id"] = interactions["user_id"].astype(str)
    interactions["item_id"] = interactions["item_id"].astype(str)
    items = sorted(interactions["item_id"].astype(str).unique())
    titles = [f"Film {i} about {'cats' if int(i) % 2 else 'space'}" for i in items]
    catalog = Catalog(
        item_ids=items,
        titles=titles if with_text else [f"Item {i}" for i in items],
        years=np.full(len(items), np.nan),
    )
    return Dataset(interactions, catalog, name="tiny")


def test_a_catalog_without_text_is_indexed_from_interactions_and_says_so(capsys):
    dataset = tiny_dataset(with_text=False)
    model = Generative(**{**SMALL, "epochs": 1}).fit(dataset)
    assert any("no item text" in note for note in model.notes_)
    assert "no item text" in capsys.readouterr().err
    assert len(np.unique(np.asarray(model.codes_), axis=0)) == dataset.n_items


def test_too_large_codebooks_shrink_with_a_note(core_item_vectors):
    dataset = tiny_dataset(with_text=True)
    model = Generative(**{**SMALL, "epochs": 1, "codebook_size": 512}).fit(dataset)
    assert any("codebook size 512" in note for note in model.notes_)
    assert max(model.sizes_[:3]) < 512
    assert len(np.unique(np.asarray(model.codes_), axis=0)) == dataset.n_items


def test_unknown_history_items_are_refused_in_one_line(generative):
    for bad, message in (([generative.n_items_ + 3], "outside the catalog"), ([], "empty")):
        with pytest.raises(WhyrecError, match=message) as caught:
            generative.generate(np.array(bad, dtype=np.int64))
        assert "\n" not in str(caught.value)
    with pytest.raises(WhyrecError, match="outside the catalog"):
        generative.score([np.array([0, -1])])


def test_bundle_round_trip_and_generation_path_explanations(generative, core_loo, tmp_path):
    Bundle(generative, core_loo.train, {}).save(tmp_path / "b")
    loaded = Bundle.load(tmp_path / "b")
    history = core_loo.train.histories()[2]
    np.testing.assert_allclose(
        loaded.model.score([history]), generative.score([history]), rtol=1e-5, atol=1e-5
    )
    assert loaded.model.item_backoff_ == generative.item_backoff_
    engine = Engine(loaded)
    listed = engine.recommend(history, k=5, explain=True)
    explained = [r.explanation for r in listed if r.explanation.history]
    assert explained, "no recommendation shares an index prefix with the history"
    for explanation in explained:
        assert explanation.history_method == GENERATION_PATH
        assert explanation.shared_values[0].field == "index level 1"
        path_of = set(loaded.model.path_labels(explanation.position))
        assert {v.value for v in explanation.shared_values} <= path_of
        assert sentences(explanation).startswith("Generated along ")


def test_cited_path_evidence_is_more_necessary_than_random(generative, core_loo):
    result = explanation_fidelity(
        generative, core_loo, k=10, n_users=20, seed=0, evidence_size=3, max_removed=3
    )
    assert result["settings"]["attribution"] == GENERATION_PATH
    assert result["pn@10"] > result["pn@10_random"]


def test_train_command_writes_a_bundle_that_recommends(tmp_path, capsys):
    dataset = tiny_dataset(with_text=True)
    data = write_canonical(dataset, tmp_path / "data")
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data), "--model", "generative", "--out", str(out)]
    for key in ("epochs=1", "quantizer_epochs=40", "dim=16", "index=semantic"):
        args += ["--param", key]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    user = dataset.user_ids[0]
    code, stdout, err = run(
        capsys, "recommend", "--bundle", str(out), "--user", str(user), "--json", "--explain"
    )
    assert code == 0, err
    assert len(json.loads(stdout)["items"]) == 10


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_device_option_trains_and_generates_where_asked(device):
    dataset = tiny_dataset(with_text=True)
    model = Generative(**{**SMALL, "epochs": 2, "device": device}).fit(dataset)
    expected = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    assert next(model.network_.parameters()).device.type == expected
    history = dataset.histories()[0]
    generated = model.generate(history, k=5, beam=10)
    assert len(generated.positions) == 5 and not np.isin(generated.positions, history).any()
    exact = model.score([history])[0][generated.positions]
    np.testing.assert_allclose(generated.log_probs, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_gpu_asked_for_without_one_is_refused_in_training_and_falls_back_when_loading(
    tmp_path, capsys
):
    dataset = tiny_dataset(with_text=True)
    with pytest.raises(WhyrecError, match="no GPU") as caught:
        Generative(**{**SMALL, "epochs": 1, "device": "cuda"}).fit(dataset)
    assert "\n" not in str(caught.value)
    model = Generative(**{**SMALL, "epochs": 1}).fit(dataset)
    # a bundle trained on a GPU machine: same arrays, config asking for cuda
    on_gpu = Generative(**{**SMALL, "epochs": 1, "device": "cuda"})
    on_gpu.n_items_ = model.n_items_
    on_gpu.set_state(model.state())
    assert "not available; using cpu" in capsys.readouterr().err
    history = dataset.histories()[1]
    np.testing.assert_allclose(on_gpu.score([history]), model.score([history]), rtol=1e-5)


def test_interpret_probes_the_encoder_state_and_scores_through_the_decoder(generative, core_loo):
    from whyrec.interpret import probe_for

    probe = probe_for(generative)
    histories = [*core_loo.train.histories()[:3], np.zeros(0, dtype=np.int64)]
    vectors = probe.vectors(histories)
    assert vectors.shape == (4, generative.config.dim) and not vectors[3].any()
    np.testing.assert_allclose(
        probe.scores(vectors, histories)[:3], generative.score(histories[:3]), rtol=1e-5
    )
    assert np.isneginf(probe.scores(vectors, histories)[3]).all()
    # an edited state changes the ranking (the scores are read from the vector given)
    edited = probe.scores(vectors[:1] + 3.0 * vectors[1:2], histories[:1])
    assert not np.allclose(edited, generative.score(histories[:1]))


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_learning_rate_warms_up_then_follows_its_schedule(schedule):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    scheduler = learning_rate_schedule(optimizer, warmup=0.2, schedule=schedule, planned_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(rates[:2], [0.05, 0.1])  # linear warm-up over 2 of 10 steps
    assert rates[2] == pytest.approx(0.1)  # the peak right after the warm-up
    if schedule == "constant":
        assert rates[-1] == pytest.approx(0.1)
    else:  # decays monotonically towards zero at the last planned step
        assert all(a >= b for a, b in itertools.pairwise(rates[2:]))
        assert 0 < rates[-1] < 0.03


def test_label_smoothing_spreads_mass_over_the_tokens_the_trie_allows(generative, core_loo):
    network = generative.network_
    items = torch.arange(6)
    codes = torch.from_numpy(np.asarray(generative.codes_))
    nodes = torch.from_numpy(generative.trie_.item_nodes)
    states = generative._states([s + 1 for s in core_loo.train.histories()[:6]])

    def loss(smoothing: float) -> float:
        model = copy.copy(generative)
        model.config = generative.config.model_copy(update={"label_smoothing": smoothing})
        with torch.no_grad():
            return model._index_loss(
                states, items, codes, nodes, generative._children, generative._trained
            ).item()

    # by hand: per level, the mean over allowed tokens of -log p
    uniform = 0.0
    with torch.no_grad():
        outputs = network.decode_all(states, codes[items])
        for level in range(codes.shape[1]):
            rows = generative._children[level][nodes[items, level]]
            log_probs = network.log_probs(
                outputs[:, level], level, rows, generative._trained[level]
            )
            allowed = rows >= 0
            uniform += float((-log_probs.masked_fill(~allowed, 0).sum(1) / allowed.sum(1)).mean())
    plain = loss(0.0)
    assert uniform > plain  # the targets are likelier than an average allowed token
    assert loss(0.3) == pytest.approx(0.7 * plain + 0.3 * uniform, rel=1e-5)


def test_regularised_training_runs_with_weight_decay_warm_up_decay_and_smoothing():
    dataset = tiny_dataset(with_text=True)
    options = {"weight_decay": 0.1, "warmup": 0.2, "schedule": "cosine", "label_smoothing": 0.1}
    model = Generative(**{**SMALL, "epochs": 3, **options}).fit(dataset)
    assert all(np.isfinite(h["loss"]) for h in model.history_)
    history = dataset.histories()[0]
    generated = model.generate(history, k=5, beam=10)
    exact = model.score([history])[0][generated.positions]
    np.testing.assert_allclose(generated.log_probs, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("overlap", "ends"), [(0.0, [119, 69, 19]), (0.5, [119, 94, 69, 44, 19])])
def test_training_windows_overlap_by_the_asked_share(overlap, ends):
    model = Generative(max_len=50, window_overlap=overlap)
    sequence = np.arange(1, 121)  # slots 1..120; the last target is slot 120
    inputs, targets = model._training_windows([sequence])
    assert [int(t[-1]) - 1 for t in targets] == ends  # window ends, latest first
    for window, target in zip(inputs, targets, strict=True):
        real = window != 0
        np.testing.assert_array_equal(target[real], window[real] + 1)  # next item at each step
        assert real.sum() == min(50, int(target[-1]) - 1)  # full length where history allows


def test_uniform_backoff_mixes_each_row_with_the_uniform_over_its_allowed_tokens():
    allowed = torch.tensor([[True, True, False, True], [True, False, False, False]])
    logits = torch.tensor([[2.0, -1.0, 5.0, 0.0], [3.0, 1.0, 1.0, 1.0]])
    log_probs = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), -1)
    mixed = uniform_backoff(log_probs, allowed, 0.3)
    expected = 0.7 * log_probs.exp() + 0.3 * allowed / allowed.sum(1, keepdim=True)
    torch.testing.assert_close(mixed.exp(), expected)
    assert torch.isneginf(mixed[~allowed]).all()
    torch.testing.assert_close(uniform_backoff(log_probs, allowed, 0.0), log_probs)


def test_the_fitted_backoff_share_maximises_the_held_out_likelihood():
    rng = np.random.default_rng(0)
    allowed = rng.integers(2, 30, 4000)
    # a model that gives its targets p, while a share 0.4 of them are really uniform draws
    p = np.where(rng.random(4000) < 0.6, 0.5, 0.002)
    share = fit_backoff_share(np.log(p), allowed)
    grid = np.linspace(0, 1, 1001)
    likelihood = [np.mean(np.log((1 - s) * p + s / allowed)) for s in grid]
    assert share == pytest.approx(grid[int(np.argmax(likelihood))], abs=2e-3)
    assert 0.05 < share < 0.95
    # a model that already gives its targets more than uniform mass needs no back-off
    assert fit_backoff_share(np.log(np.full(50, 0.9)), np.full(50, 4)) == 0.0


def test_item_backoff_moves_mass_within_each_last_level_prefix_only(generative, core_loo):
    assert 0.0 <= generative.item_backoff_ <= 1.0  # fitted on the validation users
    histories = core_loo.train.histories()[:3]
    model = copy.copy(generative)
    model.item_backoff_ = 0.0
    plain = np.exp(model.score(histories).astype(np.float64))
    model.item_backoff_ = 0.4
    backed_off = np.exp(model.score(histories).astype(np.float64))
    parents = generative.trie_.item_nodes[:, -2]  # each item's prefix before the last level
    for row in range(len(histories)):
        mass = np.bincount(parents, weights=plain[row])[parents]  # the prefix's probability
        siblings = np.bincount(parents)[parents]
        np.testing.assert_allclose(
            backed_off[row], 0.6 * plain[row] + 0.4 * mass / siblings, rtol=1e-4, atol=1e-9
        )
    history = histories[1]  # beam search reads the same mixed distribution
    generated = model.generate(history, k=10, beam=20)
    exact = model.score([history])[0][generated.positions]
    np.testing.assert_allclose(generated.log_probs, exact, rtol=1e-4, atol=1e-4)
