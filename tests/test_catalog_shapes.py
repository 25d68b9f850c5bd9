"""Conversation on catalogs of other shapes: askable values from the data, cold users,
EAR/CPR answer semantics, calibration, cold-user splits and bad catalogs."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from whyrec.bundle import Bundle
from whyrec.conversation import Conversation
from whyrec.conversation.calibrate import _noise, calibrate
from whyrec.conversation.fields import AttributeSpace
from whyrec.conversation.policy import CandidateScorer, Policy, PolicyConfig
from whyrec.conversation.state import DialogueState
from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_directory
from whyrec.data.splits import split
from whyrec.data.synth import SynthConfig, write_synthetic
from whyrec.engine import Engine
from whyrec.evaluation.conversational import simulate
from whyrec.evaluation.simulated_users import episodes_from_targets
from whyrec.models import EASE


def _synthetic(tmp_path_factory, shape: str) -> Dataset:
    folder = tmp_path_factory.mktemp(shape)
    config = SynthConfig(users=400, items=1500, interactions=12_000, seed=1, shape=shape)
    write_synthetic(config, folder, "csv")
    return load_directory(folder, name=shape)


def _engine(dataset: Dataset, method: str = "cold-users") -> tuple[Engine, object]:
    held = split(dataset, method, test_fraction=0.2, seed=0)
    return Engine(Bundle(EASE(reg=100.0).fit(held.train), held.train, test=held.test)), held


@pytest.fixture(scope="module")
def lastfm(tmp_path_factory):
    return _engine(_synthetic(tmp_path_factory, "lastfm"))


def test_space_derives_values_paths_and_ranges():
    cells = {
        "kind": [("a",), ("a",), ("b",), ("b",), ("unique",), ("a",)],
        "cat": [("Food>Pizza",), ("Food>Sushi",), ("Food>Pizza",), ("Bars",), ("Bars",), ()],
        "size": [("1",), ("2",), ("3",), ("4",), ("5",), ("6",)],
        "everywhere": [("x",)] * 6,
    }
    catalog = Catalog([str(i) for i in range(6)], [f"t{i}" for i in range(6)], np.full(6, np.nan))
    catalog.attributes = cells
    space = AttributeSpace(catalog)
    labels = {(c.field, c.value): c.kind for c in space.columns}
    assert labels[("kind", "a")] == "value" and ("kind", "unique") not in labels
    assert ("everywhere", "x") not in labels  # every item has it: says nothing
    assert labels[("cat", "Food")] == labels[("cat", "Food>Pizza")] == "path"
    assert ("cat", "Food>Sushi") not in labels  # one item only
    assert sorted(np.flatnonzero(space.mask("cat", "Food"))) == [0, 1, 2]
    ranges = [c for c in space.columns if c.field == "size"]
    assert ranges and all(c.kind == "range" for c in ranges)
    first = ranges[0]
    inside = np.flatnonzero(space.mask("size", first.value))
    assert all(float(catalog.values("size", i)[0]) <= first.high for i in inside)
    assert space.synonyms()[("cat", "Food>Pizza")] == ("Pizza",)


def test_yes_is_hard_no_excludes_and_rejected_lists_go(lastfm):
    engine, _ = lastfm
    config = PolicyConfig()
    scorer = CandidateScorer(engine, config)
    tag, value = scorer.columns[0]
    state = DialogueState()
    state.add_value(tag, value, include=True, hard=True)
    allowed = scorer.allowed(state)
    assert allowed.any() and np.array_equal(allowed, scorer.value_mask(tag, value))
    state = DialogueState()
    state.add_value(tag, value, include=False, hard=True)
    assert not (scorer.allowed(state) & scorer.value_mask(tag, value)).any()
    action = Policy(scorer, PolicyConfig(kind="recommend-only")).decide(
        DialogueState(), np.random.default_rng(0)
    )
    state = DialogueState(rejected=list(action.items))
    assert not scorer.allowed(state)[list(action.items)].any()


def test_ours_asks_on_a_cold_catalog_and_beats_recommend_only(lastfm):
    engine, held = lastfm
    episodes = episodes_from_targets(engine, held.test.interactions, 80, np.random.default_rng(0))
    report = simulate(engine, episodes, ["ours", "recommend-only"], max_turns=10)
    ours, plain = (report["policies"][p] for p in ("ours", "recommend-only"))
    assert ours["success_rate_at"]["10"] > plain["success_rate_at"]["10"]
    assert report["askable_values"] == {"tag": 30}
    assert "questions" not in report


def test_every_list_carries_the_question_that_splits_what_is_left(lastfm):
    """With `follow_up_lists` each turn is a list and, under it, a question about a value
    not yet discussed that some but not all of the remaining candidates have; the last
    turn, or one whose next list would show every candidate left, has no question. Asking
    under lists must find more targets than choosing between a list and a question, on
    the same episodes."""
    engine, held = lastfm
    config = PolicyConfig(rec_size=10, horizon=10, follow_up_lists=True)
    scorer = CandidateScorer(engine, config)
    policy = Policy(scorer, config)
    state = DialogueState()
    rng = np.random.default_rng(0)
    for turn in range(1, 11):
        state.turn = turn
        action = policy.decide(state, rng)
        assert action.kind == "recommend" and len(action.items) == 10
        for position in action.items:
            state.reject(position)
        left = scorer.allowed(state)
        if turn == 10 or left.sum() <= 10:  # nothing follows, or the next list shows all
            assert action.follow_up is None
            break
        field_name, value = action.follow_up
        assert (field_name, value) not in {tuple(a) for a in state.asked}
        has = scorer.value_mask(field_name, value) & left
        assert 0 < has.sum() < left.sum()
        state.asked.append([field_name, value])
        state.add_value(field_name, value, include=turn == 1, hard=True)
    episodes = episodes_from_targets(engine, held.test.interactions, 80, np.random.default_rng(0))
    base = PolicyConfig(follow_up_lists=True)
    report = simulate(engine, episodes, ["ours", "ours-one-action"], max_turns=10, base=base)
    both, single = (report["policies"][p] for p in ("ours", "ours-one-action"))
    assert both["success_rate_at"]["10"] > single["success_rate_at"]["10"]
    assert both["average_turns"] < single["average_turns"]
    single_only = simulate(engine, episodes, ["ours"], max_turns=10, base=PolicyConfig())
    for key in ("success_rate_at", "average_turns", "hdcg"):  # the ablation is ours without
        assert single_only[key] == single[key]


def test_calibration_fits_and_simulate_uses_it(lastfm):
    engine, held = lastfm
    record = calibrate(engine, episodes=25)
    fitted = record["parameters"]
    assert set(fitted) == set(PolicyConfig.FITTED)
    assert record["validation"]["episodes"] == 25
    assert fitted["critique_weight"] == record["critiques"]["critique_weight"]
    assert record["critiques"]["episodes"] > 0
    assert len(record["search"]) > 5
    best = max(r["success"] for r in record["search"] if r["policy"] == "ours")
    engine.bundle.info["conversation_policy"] = record
    try:
        config = PolicyConfig.from_bundle(engine.bundle.info)
        assert config.popularity_exponent == fitted["popularity_exponent"]
        episodes = episodes_from_targets(
            engine, held.test.interactions, 5, np.random.default_rng(0)
        )
        report = simulate(engine, episodes, ["ours"], max_turns=10)
        assert report["parameters"] == fitted
        assert best > 0
    finally:
        del engine.bundle.info["conversation_policy"]


def test_a_setting_must_beat_the_current_one_beyond_paired_noise():
    ones, zeros = np.ones(100), np.zeros(100)
    same = {"per_episode": (ones, zeros + 5)}
    assert _noise(same, same, max_turns=10) == 0.0
    # one episode of a hundred more found: the standard error of that difference is 0.01
    one_more = {"per_episode": (np.r_[1.0, zeros[1:]], zeros + 5)}
    none = {"per_episode": (zeros, zeros + 5)}
    assert _noise(one_more, none, max_turns=10) == pytest.approx(0.01)
    # half the episodes differ: a gain of 0.5 against an error of 0.05
    half = {"per_episode": (np.r_[ones[:50], zeros[:50]], zeros + 5)}
    assert _noise(half, none, max_turns=10) == pytest.approx(0.05, rel=0.01)


def test_cold_users_split_holds_out_whole_users(ml_core):
    held = split(ml_core, "cold-users", test_fraction=0.1, seed=3)
    test_users = set(held.test.interactions["user_id"])
    assert test_users and not test_users & set(held.train.interactions["user_id"])
    share = len(test_users) / ml_core.interactions["user_id"].nunique()
    assert share == pytest.approx(0.1, abs=0.02)
    frame = held.test.interactions
    means = ml_core.interactions.groupby("user_id")["rating"].mean()
    assert (frame["rating"].to_numpy() >= means.loc[frame["user_id"]].to_numpy()).all()


@pytest.mark.parametrize("shape", ["yelp", "fields"])
def test_synthetic_shapes(tmp_path_factory, shape):
    dataset = _synthetic(tmp_path_factory, shape)
    space = AttributeSpace(dataset.catalog)
    kinds = {c.kind for c in space.columns}
    if shape == "yelp":
        tops = {c.value for c in space.columns if ">" not in c.value}
        assert kinds == {"path"} and 10 <= len(tops) <= 30
    else:
        assert set(dataset.catalog.fields) == {"kind", "style", "origin", "price"}
        assert all(len(v) == 1 for v in dataset.catalog.attributes["kind"])
        assert {"value", "range"} <= kinds


def test_catalog_without_attributes_converses_and_says_questions_are_impossible(ml_core):
    catalog = ml_core.catalog.subset(range(len(ml_core.catalog)))
    catalog.attributes = {}
    catalog.years = np.full(len(catalog), np.nan)
    engine, held = _engine(Dataset(ml_core.interactions, catalog, "bare"), "loo")
    episodes = episodes_from_targets(engine, held.test.interactions, 5, np.random.default_rng(0))
    report = simulate(engine, episodes, ["ours", "max-entropy"], max_turns=3)
    assert "impossible" in report["questions"]
    session = Conversation(engine, wish_scorer=None).start(None)
    turn = session.send("something like Toy Story")
    assert turn.items
    assert "Toy Story (1995)" not in {item["title"] for item in turn.items}
    assert session.send("why the first one?").reply
    assert session.send("not that one").items


def test_a_field_with_ten_thousand_values_slows_nothing(lastfm):
    engine, _ = lastfm
    catalog = engine.catalog
    rng = np.random.default_rng(0)
    labels = [f"v{i}" for i in range(10_000)]
    wide = [tuple(rng.choice(labels, 3, replace=False)) for _ in range(len(catalog))]
    original = dict(catalog.attributes)
    catalog.attributes = {**original, "wide": wide}
    try:
        space = AttributeSpace(catalog)
        scorer = CandidateScorer(engine, PolicyConfig(), space=space)
        policy = Policy(scorer, PolicyConfig())
        state = DialogueState(turn=1)
        state.add_value(*scorer.columns[0], include=True, hard=True)
        began = time.perf_counter()
        for _ in range(10):
            policy.decide(state, np.random.default_rng(0))
        per_turn = (time.perf_counter() - began) / 10
        assert per_turn < 0.1
        assert space.fields()["tag"] == 30
    finally:
        catalog.attributes = original


def test_a_value_no_item_has_is_answered_in_words(lastfm):
    engine, _ = lastfm
    session = Conversation(engine, wish_scorer=None).start(None)
    session.state.add_value("tag", "no-such-value", include=True, hard=True)
    turn = session.send("recommend something")
    assert not turn.items and "Nothing in the catalog matches" in turn.reply


def test_language_understands_any_field_and_softening(lastfm):
    engine, _ = lastfm
    conversation = Conversation(engine, wish_scorer=None)
    value = conversation.space.columns[0].value
    said = conversation.understander.understand(f"something {value.lower()} please")
    assert [(c.field, c.value, c.hard) for c in said.constraints] == [("tag", value, True)]
    soft = conversation.understander.understand(f"ideally {value.lower()}")
    assert [c.hard for c in soft.constraints] == [False]


def test_cli_synth_split_train_calibrates_and_simulate_prints_it(tmp_path, capsys):
    from cli_helpers import run

    data, split_dir, bundle = tmp_path / "data", tmp_path / "split", tmp_path / "bundle"
    synth = ("--users", "200", "--items", "600", "--interactions", "5000", "--format", "csv")
    code, out, err = run(capsys, "data", "synth", *synth, "--shape", "lastfm", "--out", str(data))
    assert code == 0, err
    code, _, err = run(capsys, "data", "split", str(data), "--method", "cold-users")
    assert code == 2  # --out is required
    args = ("--method", "cold-users", "--fraction", "0.25", "--out", str(split_dir))
    code, out, err = run(capsys, "data", "split", str(data), *args)
    assert code == 0, err
    targets = pd.read_csv(split_dir / "targets.csv", dtype=str)
    assert list(targets.columns) == ["user_id", "item_id"] and len(targets)
    train_users = set(pd.read_csv(split_dir / "train.csv", dtype=str)["user_id"])
    assert not set(targets["user_id"]) & train_users
    code, out, err = run(
        capsys, "train", "--data", str(data), "--holdout", "cold-users", "--out", str(bundle)
    )
    assert code == 0, err
    info = json.loads((bundle / "bundle.json").read_text())
    stored = info["conversation_policy"]
    assert set(stored["parameters"]) == set(PolicyConfig.FITTED)
    assert set(info["text_query"]["parameters"]) == {"popularity_weight", "smoothing"}
    report = tmp_path / "sim.json"
    code, out, err = run(
        capsys,
        *("simulate", "--bundle", str(bundle), "--targets", str(split_dir / "targets.csv")),
        *("--episodes", "20", "--max-turns", "10", "--json", str(report)),
    )
    assert code == 0, err
    assert "policy parameters (fitted on" in out and "tag (" in out
    assert json.loads(report.read_text())["parameters"] == stored["parameters"]
