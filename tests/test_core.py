"""The core shapes on real data: Query in, ItemList out, one ItemFilter, one Vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.core import ItemList, Query
from whyrec.data.vocabulary import Vocabulary
from whyrec.engine import Engine
from whyrec.errors import DataError, NotFoundError, WhyrecError
from whyrec.filters import ItemFilter
from whyrec.models import Popularity


@pytest.fixture(scope="module")
def engine(ml_small) -> Engine:
    return Engine(Bundle(Popularity().fit(ml_small), ml_small))


def has(catalog, field_name: str, value: str) -> np.ndarray:
    return np.array([value in catalog.values(field_name, p) for p in range(len(catalog))])


def test_required_values_must_all_be_there_and_included_ones_any(ml_small):
    catalog = ml_small.catalog
    comedy, romance = has(catalog, "genres", "Comedy"), has(catalog, "genres", "Romance")
    both = ItemFilter(require={"genres": {"Comedy", "romance"}}).mask(catalog)
    either = ItemFilter(include={"genres": {"Comedy", "Romance"}}).mask(catalog)
    assert (both == (comedy & romance)).all()
    assert (either == (comedy | romance)).all()


def test_excluded_years_and_blocked_items(ml_small):
    catalog = ml_small.catalog
    item_filter = ItemFilter(excluded_years=[(1990, 1999)], blocked=frozenset({0, 5}))
    mask = item_filter.mask(catalog)
    nineties = (catalog.years >= 1990) & (catalog.years <= 1999)
    assert not mask[nineties].any() and not mask[[0, 5]].any()
    assert mask[~nineties & (np.arange(len(catalog)) > 5)].all()


def test_checks_say_how_an_item_meets_each_constraint(ml_small):
    catalog = ml_small.catalog
    toy_story = catalog.position("1")  # Adventure|Animation|Children|Comedy|Fantasy, 1995
    item_filter = ItemFilter(
        require={"genres": {"Animation", "Horror"}}, excluded_years=[(1990, 1999)]
    )
    checks = {(c.kind, c.wanted): c.satisfied for c in item_filter.checks(catalog, toy_story)}
    assert checks == {
        ("require", ("Animation",)): True,
        ("require", ("Horror",)): False,
        ("exclude_years", ("1990-1999",)): False,
    }
    assert item_filter.to_dict()["require"] == {"genres": ["Animation", "Horror"]}


def test_run_returns_an_item_list_that_obeys_the_query(engine):
    catalog = engine.catalog
    history = engine.user_history("1")
    comedy = ItemFilter(include={"genres": {"Comedy"}})
    excluded = engine.run(Query(history=history, item_filter=comedy, k=3), explain=False)
    query = Query(user_id="1", item_filter=comedy, exclude=excluded.positions, k=5)
    items = engine.run(query)
    assert isinstance(items, ItemList) and len(items) == 5
    assert not set(items.positions) & set(history) and not set(items.positions) & set(
        excluded.positions
    )
    assert all("Comedy" in catalog.values("genres", p) for p in items.positions)
    assert items.ids == [catalog.item_ids[p] for p in items.positions]
    assert items.ranks.tolist() == [1, 2, 3, 4, 5]
    assert list(items.scores) == sorted(items.scores, reverse=True)
    entries = items.to_dicts(with_explanation=True)
    assert [e["rank"] for e in entries] == [1, 2, 3, 4, 5]
    assert all("text" in e["explanation"] for e in entries)
    assert items[-1].position == items.positions[-1] and len(items[1:3]) == 2


def test_query_resolves_a_user_or_titles_and_checks_the_filter(engine):
    by_user = engine.query(user_id="1")
    assert (by_user.history == engine.user_history("1")).all()
    by_titles = engine.query(references=["Toy Story", "Heat (1995)"], k=4)
    assert by_titles.history.tolist() == [
        engine.catalog.position("1"),
        engine.catalog.position("6"),
    ]
    assert engine.query(user_id="1", item_filter=ItemFilter()).item_filter is None
    with pytest.raises(WhyrecError, match="did you mean"):
        engine.query(user_id="1", item_filter=ItemFilter(include={"genres": {"Comdy"}}))
    with pytest.raises(WhyrecError, match="k must be at least 1"):
        Query(user_id="1", k=0)


def test_vocabulary_maps_ids_both_ways_and_names_what_is_unknown():
    users = Vocabulary(["7", "3", "11"], "user")
    assert users["3"] == 1 and users.id(2) == "11" and "7" in users and len(users) == 3
    assert users.numbers(["11", "nobody", "7"]).tolist() == [2, -1, 0]
    assert users.get("nobody") is None
    with pytest.raises(NotFoundError, match="unknown user 'nobody'"):
        users["nobody"]
    with pytest.raises(DataError, match="duplicate"):
        Vocabulary(["a", "b", "a"])
    labels = Vocabulary([("genre", "a"), ("genre", "b"), ("genre", "a")], duplicates="last")
    assert labels[("genre", "a")] == 2 and labels.id(0) == ("genre", "a")


def test_head_and_brief_entries_keep_the_one_item_shape(engine):
    items = engine.run(Query(user_id="1", k=5), explain=False)
    head = items.head(2)
    assert head.positions.tolist() == items.positions[:2].tolist()
    assert head.to_dicts() == items.to_dicts()[:2]
    assert head.to_dicts(brief=True) == [
        {"item_id": i, "title": t} for i, t in zip(head.ids, head.titles, strict=True)
    ]
    unscored = ItemList(engine.catalog, items.positions)
    assert [e["score"] for e in unscored.to_dicts()] == [None] * 5
