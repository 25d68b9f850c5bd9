"""Explanations: exact and occlusion attribution, evidence, rendering, why-not, CLI."""

from __future__ import annotations

import json
from typing import Self

import numpy as np
import pytest

from cli_helpers import run
from whyrec.bundle import Bundle
from whyrec.core import Query
from whyrec.data.dataset import Dataset
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.explain.attribution import EXACT, OCCLUSION, attribute, occlusion_weights
from whyrec.explain.explainer import HIGH_MARGIN, MEDIUM_MARGIN
from whyrec.explain.explanation import HIGH, LOW, MEDIUM
from whyrec.explain.render import sentences, to_data, to_json
from whyrec.explain.schema import ExplanationData
from whyrec.filters import ItemFilter
from whyrec.models import EASE
from whyrec.models.base import Histories, ModelConfig, Recommender, histories_to_csr


class SquaredConfig(ModelConfig):
    """No hyper-parameters."""


class SquaredEASE(Recommender):
    """A non-additive test model: EASE's score squared. It has no exact contributions, so
    explanations must fall back to occlusion. It counts its `score` calls."""

    name = "squared-ease"
    Config = SquaredConfig

    def __init__(self, base: EASE) -> None:
        super().__init__()
        self.base = base
        self.n_items_ = base.n_items_
        self.calls = 0

    def fit(self, dataset: Dataset) -> Self:
        return self

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        scores = self.base.score(histories_to_csr(histories, self.n_items_), items)
        return np.where(np.isfinite(scores), np.sign(scores) * scores**2, scores)

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        return None


@pytest.fixture(scope="module")
def ease(ml_core) -> EASE:
    return EASE().fit(ml_core)


@pytest.fixture(scope="module")
def engine(ease, ml_core) -> Engine:
    return Engine(Bundle(ease, ml_core))


@pytest.fixture(scope="module")
def user_one(engine) -> np.ndarray:
    return engine.user_history("1")


def test_exact_contributions_sum_to_the_score(engine, user_one):
    items = engine.recommend(user_one, k=5, explain=False)
    positions = np.array([i.position for i in items])
    attribution = attribute(engine.model, user_one, positions)
    assert attribution.method == EXACT
    scores = engine.model.score([user_one], positions)[0]
    np.testing.assert_allclose(attribution.weights.sum(axis=1), scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attribution.shares().sum(axis=1), 1.0, rtol=1e-6)


def test_occlusion_is_one_batch_and_matches_a_naive_loop(ease, user_one):
    model = SquaredEASE(ease)
    history = user_one[:25]
    items = np.array([p for p in ease.active_[:200] if p not in set(history.tolist())][:7])
    drops = occlusion_weights(model, history, items)
    assert model.calls == 1
    full = model.score([history], items)[0]
    naive = np.zeros((len(items), len(history)))
    for j in range(len(history)):
        reduced = np.delete(history, j)
        naive[:, j] = full - model.score([reduced], items)[0]
    np.testing.assert_allclose(drops, naive, rtol=1e-4, atol=1e-6)
    assert attribute(model, history, items).method == OCCLUSION


def test_occlusion_explanations_through_the_engine(ease, ml_core, user_one):
    engine = Engine(Bundle(SquaredEASE(ease), ml_core))
    items = engine.recommend(user_one[:30], k=3)
    for item in items:
        assert item.explanation.history_method == OCCLUSION
        assert item.because == item.explanation.history
        assert all(c.contribution > 0 for c in item.because)
        assert "of the score lost when each is left out" in sentences(item.explanation)


def test_recommendations_carry_explanations_and_old_keys(engine, user_one):
    items = engine.recommend(user_one, k=10, user_id="1")
    for item in items:
        data = item.to_dict()
        assert {"rank", "item_id", "title", "score", "because"} <= set(data)
        assert "explanation" not in data
        explanation = item.explanation
        assert explanation.recommended and explanation.rank == item.rank
        assert explanation.history_method == EXACT
        assert [c.item_id for c in item.because] == [c.item_id for c in explanation.history]
        assert explanation.cited_share == pytest.approx(sum(c.share for c in explanation.history))
        assert explanation.confidence.label in (HIGH, MEDIUM, LOW)
        full = item.to_dict(with_explanation=True)["explanation"]
        assert full["text"] == sentences(explanation)
        json.loads(to_json(explanation))
    margins = [i.explanation.confidence.margin for i in items]
    assert margins == sorted(margins, reverse=True)
    for item in items:
        confidence = item.explanation.confidence
        expected = (
            HIGH
            if confidence.margin >= HIGH_MARGIN
            else MEDIUM
            if confidence.margin >= MEDIUM_MARGIN
            else LOW
        )
        assert confidence.label == expected


def test_sentence_names_real_titles_and_correct_share(engine, user_one):
    top = engine.recommend(user_one, k=1)[0]
    explanation = top.explanation
    text = sentences(explanation)
    contributions = engine.model.contributions(user_one, np.array([top.position]))[0]
    cited_positions = [engine.catalog.position(c.item_id) for c in explanation.history]
    order = np.argsort(-contributions)[: len(cited_positions)]
    assert cited_positions == [int(user_one[j]) for j in order]
    share = contributions[order].sum() / contributions.sum()
    assert text.startswith("Because you liked ")
    for position in cited_positions:
        assert engine.catalog.titles[position] in text
    assert f"({share:.0%} of this score)" in text
    for value in explanation.shared_values:
        assert value.value in text or value.value.lower() in text


def test_attribute_paths_and_collaborative_counts_are_real(engine, user_one, ml_core):
    explanation = engine.recommend(user_one, k=1, user_id="1")[0].explanation
    cited = {c.item_id for c in explanation.history}
    target = explanation.item_id
    for path in explanation.paths:
        assert path.from_item_id in cited
        assert path.value in engine.catalog.values(path.field, explanation.position)
        assert path.value in engine.catalog.values(path.field, path.from_position)
    frame = ml_core.interactions
    users_cited = set(frame.loc[frame["item_id"].isin(cited), "user_id"]) - {"1"}
    users_target = set(frame.loc[frame["item_id"] == target, "user_id"])
    collab = explanation.collaborative
    assert collab.users_with_cited == len(users_cited)
    assert collab.users_with_both == len(users_cited & users_target)
    first = explanation.history[0].item_id
    users_first = set(frame.loc[frame["item_id"] == first, "user_id"]) - {"1"}
    assert collab.per_cited_item[0] == len(users_first & users_target)


def test_why_not_for_a_low_ranked_item(engine, user_one):
    ranking = engine.recommend(user_one, k=60, explain=False)
    cutoff_score = ranking[9].score
    target = ranking[49]
    explanation = engine.explain(Query(history=user_one), target.position)
    assert not explanation.recommended
    why = explanation.why_not
    assert why.rank == 50 and explanation.rank == 50
    assert why.cutoff_score == pytest.approx(cutoff_score)
    assert explanation.confidence.label == LOW
    assert all(c.contribution < 0 for c in why.pushing_down)
    history_values = {v for p in user_one for v in engine.catalog.values("genres", p)}
    for missing in why.missing_values:
        assert missing.value not in engine.catalog.values(missing.field, target.position)
        if missing.field == "genres":
            assert missing.value in history_values
    text = sentences(explanation)
    assert text.startswith(f"{target.title} is 50th for you, below the top 10")
    for contribution in why.pushing_down:
        assert contribution.title in text


def test_why_not_for_a_filtered_item(engine, user_one):
    top = engine.recommend(user_one, k=1, explain=False)[0]
    genre = engine.catalog.values("genres", top.position)[0]
    item_filter = ItemFilter(exclude={"genres": {genre}})
    filtered = engine.recommend(user_one, k=10, item_filter=item_filter)
    assert top.position not in [i.position for i in filtered]
    explanation = engine.explain(Query(history=user_one, item_filter=item_filter), top.position)
    why = explanation.why_not
    assert why.rank is None and why.rank_unfiltered == 1
    assert [c.kind for c in why.filter_violations] == ["exclude"]
    assert genre in why.filter_violations[0].item_values
    text = sentences(explanation)
    assert "ruled out by your request" in text and genre in text
    kept = filtered[0].explanation
    assert kept.constraints and all(c.satisfied for c in kept.constraints)


def test_the_api_models_describe_every_serialized_field(engine, user_one):
    """Listed, low-ranked and filtered-out items round-trip through `ExplanationData`
    unchanged: no key of `to_dict` is missing from (or dropped by) the API's models."""
    ranking = engine.recommend(user_one, k=60, explain=False)
    genre = engine.catalog.values("genres", ranking[0].position)[0]
    item_filter = ItemFilter(exclude={"genres": {genre}})
    explanations = [e.explanation for e in engine.recommend(user_one, k=10)]
    explanations += [e.explanation for e in engine.recommend(user_one, item_filter=item_filter)]
    filtered = Query(history=user_one, item_filter=item_filter)
    explanations.append(engine.explain(Query(history=user_one), ranking[49].position))
    explanations.append(engine.explain(filtered, ranking[0].position))
    data = [to_data(e) for e in explanations]
    for entry in data:
        assert ExplanationData.model_validate(entry).model_dump() == entry
    for key in ("paths", "shared_values", "constraints", "history"):  # every part exercised
        assert any(entry[key] for entry in data), key
    why_not = [entry["why_not"] for entry in data if entry["why_not"]]
    for key in ("filter_violations", "missing_values", "pushing_down"):
        assert any(w[key] for w in why_not), key
    assert all(entry["collaborative"] and entry["confidence"] for entry in data)


def test_explain_agrees_with_recommend_for_a_listed_item(engine, user_one):
    listed = engine.recommend(user_one, k=10)[3]
    explanation = engine.explain(Query(history=user_one), listed.position)
    assert explanation.recommended and explanation.rank == 4
    assert explanation.to_dict() == listed.explanation.to_dict()


def test_explain_rejects_an_item_already_in_the_history(engine, user_one):
    with pytest.raises(WhyrecError, match="already in the history"):
        engine.explain(Query(history=user_one), int(user_one[0]))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, ease, ml_core):
    return Bundle(ease, ml_core).save(tmp_path_factory.mktemp("bundles") / "core")


def test_cli_explain_end_to_end(bundle_dir, capsys, engine, user_one):
    top = engine.recommend(user_one, k=1, explain=False)[0]
    code, out, _ = run(
        capsys,
        "explain",
        "--bundle",
        str(bundle_dir),
        "--user",
        "1",
        "--item",
        top.item_id,
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["item_id"] == top.item_id and data["rank"] == 1 and data["recommended"]
    assert data["history_method"] == EXACT and data["text"].startswith("Because you liked")

    code, out, _ = run(
        capsys, "explain", "--bundle", str(bundle_dir), "--user", "1", "--item", "Finding Nemo"
    )
    assert code == 0
    assert "Finding Nemo (2003)" in out and "for you, below the top 10" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--item", "1036"], "unknown user"),
        (["--user", "1", "--item", "no such film at all qq"], "no item titled"),
        (["--user", "1", "--item", "1"], "already in the history"),
    ],
)
def test_cli_explain_bad_input_is_one_line(bundle_dir, capsys, args, message):
    code, _out, err = run(capsys, "explain", "--bundle", str(bundle_dir), *args)
    assert code == 2  # a user mistake: one line, exit 2 (cli.EXIT_USER_ERROR)
    assert err.startswith("error:") and message in " ".join(err.split())
    assert "Traceback" not in err


def test_cli_recommend_explain_prints_sentences(bundle_dir, capsys):
    code, out, _ = run(
        capsys, "recommend", "--bundle", str(bundle_dir), "--user", "1", "-k", "2", "--explain"
    )
    assert code == 0
    assert out.count("Because you liked") == 2
    code, out, _ = run(
        capsys,
        "recommend",
        "--bundle",
        str(bundle_dir),
        "--user",
        "1",
        "-k",
        "2",
        "--json",
        "--explain",
    )
    items = json.loads(out)["items"]
    assert all(i["explanation"]["text"].startswith("Because") for i in items)


def test_why_not_for_an_item_the_model_cannot_score(engine, user_one, ml_core):
    never_seen = int(np.flatnonzero(ml_core.item_popularity() == 0)[0])
    explanation = engine.explain(Query(history=user_one), never_seen)
    assert not explanation.why_not.scorable and explanation.rank is None
    assert explanation.to_dict()["score"] is None
    json.loads(to_json(explanation))
    assert sentences(explanation).endswith("cannot be ranked: the model has no data on it.")
