"""Soft wishes matched by the real sentence encoder, on the compact catalog."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.conversation import Conversation
from whyrec.engine import Engine
from whyrec.models import EASE
from whyrec.text.wishes import SemanticWishes


@pytest.fixture(scope="module")
def wishes(core_compact, core_item_vectors):
    scorer = SemanticWishes(core_compact.catalog)
    scorer.item_vectors = core_item_vectors  # already encoded once for the session
    return scorer


def test_wish_naming_a_tag_raises_items_with_it(wishes, core_compact):
    scores = wishes([("feel-good", True)])
    assert scores is not None
    assert ("feel-good", "tags", "feel-good") in [m[:3] for m in wishes.last_matches]
    tagged = core_compact.catalog.mask_with_value("tags", ["feel-good"])
    n_tagged = int(tagged.sum())
    assert n_tagged >= 2
    top = np.argsort(-scores)[: min(10, n_tagged)]
    assert tagged[top].all()


def test_vague_leftovers_add_nothing(wishes):
    assert wishes([("tonight", True)]) is None


def test_negative_wish_pushes_down(wishes, core_compact):
    liked = wishes([("dark and gritty", True)])
    disliked = wishes([("dark and gritty", False)])
    np.testing.assert_allclose(liked, -disliked)


def test_conversation_uses_wishes(core_compact, wishes):
    engine = Engine(Bundle(EASE(reg=200.0).fit(core_compact), core_compact))
    conversation = Conversation(engine, wish_scorer=wishes)
    session = conversation.start()
    turn = session.send("recommend something uplifting")
    while not turn.items:
        turn = session.send("yes")
    assert ["uplifting", True] in session.state.wishes
    catalog = core_compact.catalog
    related = catalog.mask_with_value(
        "tags", ["heartwarming", "feel-good", "inspirational", "inspiring", "touching"]
    )
    shown = [catalog.position(i["item_id"]) for i in turn.items]
    assert related[shown].mean() > related.mean() * 3


def test_query_blend_is_fitted_on_pseudo_queries_and_read_by_the_engine(
    core_compact, core_item_vectors
):
    from whyrec.text.query_blend import SMOOTHING, WEIGHTS, calibrate_query_blend, pseudo_queries

    queries, targets, texts = pseudo_queries(core_compact, 30, seed=1)
    fields = core_compact.catalog.fields
    for query, target, text in zip(queries, targets, texts, strict=True):
        kept = {
            value
            for part in text.split(". ")
            for name in fields
            if part.startswith(f"{name}: ")
            for value in part.removeprefix(f"{name}: ").split(", ")
        }
        for value in query.split(", "):
            assert value in core_compact.catalog.text(target)
            assert value not in kept  # taken out of the target's fields
    record = calibrate_query_blend(core_compact, seed=1, count=60)
    fitted = record["parameters"]
    assert fitted["popularity_weight"] in WEIGHTS and fitted["smoothing"] in SMOOTHING
    best = max(r["hit@10"] for r in record["search"])
    assert best == next(
        r["hit@10"]
        for r in record["search"]
        if (r["popularity_weight"], r["smoothing"])
        == (fitted["popularity_weight"], fitted["smoothing"])
    )
    bundle = Bundle(EASE().fit(core_compact), core_compact, {"text_query": record})
    engine = Engine(bundle)
    engine.text_matcher.item_vectors = core_item_vectors
    weight, smoothing, _ = engine.query_blend
    assert (weight, smoothing) == (fitted["popularity_weight"], fitted["smoothing"])
    items = engine.recommend(np.zeros(0, dtype=np.int64), k=5, explain=False, text="pixar")
    assert len(items) == 5


def test_a_described_request_is_explained_by_the_terms_its_score_adds_up_to(
    core_compact, core_item_vectors
):
    """Each listed item's terms sum to the score it was ranked by; the
    values cited are ones the description names and the item has; the words say so
    instead of "not explained by any single item you liked"."""
    from whyrec.explain.render import sentences, to_data
    from whyrec.explain.schema import ExplanationData
    from whyrec.text.wishes import VALUE_MATCH

    fitted = {"parameters": {"popularity_weight": 1.5, "smoothing": 0.5}}
    engine = Engine(Bundle(EASE().fit(core_compact), core_compact, {"text_query": fitted}))
    engine.text_matcher.item_vectors = core_item_vectors
    catalog = core_compact.catalog
    nobody = np.zeros(0, dtype=np.int64)
    items = engine.recommend(nobody, k=8, text="a pixar film")
    named = set()
    for item in items:
        match, terms = item.explanation.description, item.explanation.terms
        assert set(terms) == {"match", "popularity", "neighbours"}
        assert sum(terms.values()) == pytest.approx(item.score, rel=1e-5, abs=1e-4)
        assert match.chosen_by == engine.popularity[item.position]
        for name, value, cosine in match.values:
            assert value in catalog.values(name, item.position) and cosine >= VALUE_MATCH
            named.add((name, value))
        neighbours = engine.query_blend[2][item.position].indices
        assert {catalog.titles.index(t) for t in match.neighbours} <= set(neighbours.tolist())
        words = sentences(item.explanation)
        assert '"a pixar film"' in words and "not explained" not in words
        assert ExplanationData.model_validate(to_data(item.explanation)).model_dump() == to_data(
            item.explanation
        )
    assert ("tags", "pixar") in named
    liked = items.positions[:2]
    with_history = engine.recommend(liked, k=5, text="a pixar film")
    for item in with_history:
        terms = item.explanation.terms
        assert "history" in terms and item.position not in liked
        assert sum(terms.values()) == pytest.approx(item.score, rel=1e-5, abs=1e-4)
        assert "your history adds" in sentences(item.explanation)
