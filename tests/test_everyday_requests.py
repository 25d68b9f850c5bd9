"""Everyday phrasing on real data: or-groups, critiques, superlatives, facets the catalog
lacks, first-turn judgement (no encoder: these rules must hold without it)."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.conversation import Conversation, SessionStore
from whyrec.conversation.lexicon import load_lexicon
from whyrec.conversation.understanding import Understander
from whyrec.engine import Engine
from whyrec.filters import ItemFilter
from whyrec.models import EASE


@pytest.fixture(scope="module")
def engine(ml_small):
    return Engine(Bundle(EASE(reg=200.0).fit(ml_small), ml_small))


@pytest.fixture
def conversation(engine, tmp_path):
    return Conversation(engine, store=SessionStore(tmp_path / "s.sqlite"), wish_scorer=None)


@pytest.fixture(scope="module")
def nlu(ml_small):
    return Understander(
        ml_small.catalog, ml_small.item_popularity(), lexicon=load_lexicon(ml_small.name)
    )


def _positions(engine, turn) -> list[int]:
    return [engine.catalog.position(i["item_id"]) for i in turn.items]


def test_or_is_a_disjunction_and_the_list_honours_it(conversation, engine):
    turn = conversation.start().send("older films please, before 1970, crime or film-noir")
    assert turn.items  # a list at once; a follow-up question may ride along with it
    follow_up = turn.state["pending"]
    assert follow_up is None or follow_up["value"] not in ("Crime", "Film-Noir")
    catalog = engine.catalog
    for position in _positions(engine, turn):
        assert {"Crime", "Film-Noir"} & set(catalog.values("genres", position))
        assert catalog.year(position) < 1970


def test_and_but_not_across_clauses(nlu):
    said = nlu.understand("comedy or romance. but not horror")
    assert said.any_of == [[("genres", "Comedy"), ("genres", "Romance")]]
    assert ("genres", "Horror", False) in {(c.field, c.value, c.include) for c in said.constraints}
    both = nlu.understand("an action comedy")
    assert not both.any_of and {c.value for c in both.constraints} == {"Action", "Comedy"}


def test_several_decades_are_a_union(nlu):
    said = nlu.understand("comedies from the 70s or the 90s")
    assert (said.year_min, said.year_max) == (1970, 1999)
    assert said.excluded_years == [(1980, 1989)]


def test_superlative_ranks_by_quality_at_once(conversation, engine):
    turn = conversation.start().send("best documentaries")
    assert turn.question is None and len(turn.items) == 10
    quality = conversation.measures.quality
    shown = _positions(engine, turn)
    documentaries = engine.catalog.mask_with_value("genres", ["Documentary"])
    assert np.mean(quality[shown]) > np.quantile(quality[documentaries], 0.9)


def test_critique_moves_the_list_and_says_what_moved(conversation, engine):
    session = conversation.start()
    first = session.send("a comedy")
    older = session.send("older")
    years = engine.catalog.years
    assert np.nanmedian(years[_positions(engine, older)]) < np.nanmedian(
        years[_positions(engine, first)]
    )
    assert older.reply.startswith("Moved the list — older: median year")
    known = session.send("less known ones")
    popularity = engine.popularity
    assert np.median(popularity[_positions(engine, known)]) < np.median(
        popularity[_positions(engine, older)]
    )


def test_missing_facet_is_said_plainly_never_a_question(conversation):
    turn = conversation.start().send("movies directed by Steven Spielbergo")
    assert turn.question is None and not turn.items
    assert "does not know directors" in turn.reply
    with_genre = conversation.start().send("a comedy under 90 minutes")
    assert with_genre.question is None and with_genre.items
    assert "does not know runtimes" in with_genre.reply


def test_vague_first_request_may_ask_specific_one_gets_a_list(conversation):
    assert conversation.start().send("a thriller from the 90s").items


def test_no_title_hijack_without_naming_it(nlu):
    said = nlu.understand("a romantic comedy for date night")
    assert not said.mentions and not said.uncertain
    named = nlu.understand('something like "Date Night"')
    assert [m.title for m in named.mentions] == ["Date Night (2010)"]


def test_any_of_filter(ml_small):
    catalog = ml_small.catalog
    mask = ItemFilter(any_of=[[("genres", "Western"), ("genres", "Film-Noir")]]).mask(catalog)
    expected = catalog.mask_with_value("genres", ["Western", "Film-Noir"])
    assert np.array_equal(mask, expected) and 0 < mask.sum() < len(catalog)
