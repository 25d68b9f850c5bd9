"""Embedded understanding on the real MovieLens catalog."""

from __future__ import annotations

import pytest

from whyrec.conversation.lexicon import load_lexicon
from whyrec.conversation.understanding import Intent, Understander


@pytest.fixture(scope="module")
def nlu(ml_small):
    lexicon = load_lexicon(ml_small.name)
    return Understander(ml_small.catalog, ml_small.item_popularity(), lexicon=lexicon)


def _genres(result, include=True):
    return {c.value for c in result.constraints if c.field == "genres" and c.include == include}


def test_the_flagship_request(nlu):
    result = nlu.understand("a funny animated film from the 90s, like Toy Story, nothing scary")
    assert Intent.RECOMMEND in result.intents
    assert [m.title for m in result.mentions] == ["Toy Story (1995)"]
    assert result.mentions[0].liked
    assert _genres(result) == {"Comedy", "Animation"}
    assert _genres(result, include=False) == {"Horror"}
    assert (result.year_min, result.year_max) == (1990, 1999)
    assert not result.soft_wishes


def test_likes_and_dislikes_with_typos_and_quotes(nlu):
    result = nlu.understand("I hated Titanic but loved The Matrix")
    polarity = {m.title: m.liked for m in result.mentions}
    assert polarity == {"Titanic (1997)": False, "Matrix, The (1999)": True}
    result = nlu.understand("I like Jurassic Prak and 'Heat'")
    assert {m.title for m in result.mentions} == {"Jurassic Park (1993)", "Heat (1995)"}


def test_a_three_letter_word_gets_back_only_a_dropped_letter(nlu):
    assert nlu.understand("bst horror movies").superlative == "quality"
    for message in ("rom com please", "a sci fi film", "fun war movies"):
        assert not any(note.startswith("read ") for note in nlu.understand(message).notes)


@pytest.mark.parametrize(
    "message",
    [
        "absolutely, actually, none of these work for me",
        "not at all",
        "yep, that sounds right",
        "honestly, something else",
        "not really, sorry, different ones please",
    ],
)
def test_the_words_around_an_answer_are_not_wishes(nlu, message):
    result = nlu.understand(message)
    assert not result.soft_wishes
    assert result.answer is not None or Intent.REJECT_ALL in result.intents


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("none of these, yes", True),
        ("not these. yes please", True),
        ("none of these work for me - no", None),
        ("none of these work for me; nope", False),
        ("show me something else, not really", False),
        ("yes, none of these", True),
        ("I want a comedy, no horror", None),
        ("something with no", None),
        ("hmm, none of these, yeah sure", True),
        ("show me something else, yep, that sounds right", True),
        ("sorry, none of these work for me, no thanks", False),
        ("something else, please", None),
    ],
)
def test_an_answer_may_come_last_in_a_clause_of_its_own(nlu, message, answer):
    """Under a list that carries a question people reject and answer in either order; an
    answer word inside a request ("no horror") is not an answer."""
    result = nlu.understand(message)
    assert result.answer is answer
    assert not result.soft_wishes


def test_a_wish_may_start_with_a_word_that_also_sits_around_answers(nlu):
    assert ("well made", True) in nlu.understand("well made thrillers").soft_wishes


def test_titles_are_not_attribute_words(nlu):
    result = nlu.understand("something like Scary Movie")
    assert [m.title for m in result.mentions] == ["Scary Movie (2000)"]
    assert not result.constraints


@pytest.mark.parametrize(
    ("message", "low", "high"),
    [
        ("after 2010", 2011, None),
        ("since 2010", 2010, None),
        ("before 1980", None, 1979),
        ("between 1990 and 2000", 1990, 2000),
        ("from the eighties", 1980, 1989),
        ("something from '70s", 1970, 1979),
    ],
)
def test_year_ranges(nlu, message, low, high):
    result = nlu.understand(message)
    assert (result.year_min, result.year_max) == (low, high)


def test_negated_years_and_genres(nlu):
    result = nlu.understand("no horror or thriller, and not from the 80s")
    assert _genres(result, include=False) == {"Horror", "Thriller"}
    assert result.excluded_years == [(1980, 1989)]


@pytest.mark.parametrize(
    ("message", "intent", "reference"),
    [
        ("why the second one?", Intent.WHY, 1),
        ("not that one", Intent.REJECT, None),
        ("not #3", Intent.REJECT, 2),
        ("none of these", Intent.REJECT_ALL, None),
        ("more like the first one", Intent.MORE_LIKE, 0),
        ("I'll watch the last one, thanks", Intent.ACCEPT, -1),
        ("start over", Intent.RESTART, None),
        ("yes please", Intent.YES, None),
        ("nope", Intent.NO, None),
    ],
)
def test_intents_and_references(nlu, message, intent, reference):
    result = nlu.understand(message, shown=[10, 20, 30])
    assert intent in result.intents
    assert result.reference == reference
    assert not result.mentions


def test_why_about_a_title(nlu, ml_small):
    result = nlu.understand("why Toy Story?")
    assert result.intents == [Intent.WHY]
    assert result.subject == ml_small.catalog.position("1")


def test_values_are_hard_unless_softened_and_free_words_become_wishes(nlu):
    result = nlu.understand("I'd like something feel-good, maybe mind-bending")
    assert {(c.field, c.value, c.hard) for c in result.constraints} == {("tags", "feel-good", True)}
    softened = nlu.understand("ideally something feel-good")
    assert {(c.field, c.value, c.hard) for c in softened.constraints} == {
        ("tags", "feel-good", False)
    }
    assert ("mind-bending", True) in result.soft_wishes


def test_unknown_titles_and_uncertain_matches(nlu):
    result = nlu.understand("like Qwerty Zorblax")
    assert result.unknown_titles and result.unknown_titles[0][0] == "Qwerty Zorblax"
    assert len(result.unknown_titles[0][1]) == 3
    assert not result.mentions and not result.constraints


def test_contradictions_and_empty_and_long_messages(nlu):
    assert nlu.understand("comedy but not comedy").contradictions == ["genres=Comedy"]
    assert nlu.understand("   ").is_empty
    long = nlu.understand("funny " * 400)
    assert long.notes and _genres(long) == {"Comedy"}
