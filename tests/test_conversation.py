"""Conversations on real data: understanding → state → policy → explained replies."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.conversation import Conversation, SessionStore
from whyrec.conversation.policy import PolicyConfig
from whyrec.data.splits import split
from whyrec.engine import Engine
from whyrec.errors import NotFoundError
from whyrec.explain.schema import TurnExplanationData
from whyrec.models import EASE


@pytest.fixture(scope="module")
def engine(ml_small):
    held = split(ml_small.kcore(10), "loo", seed=0)
    return Engine(Bundle(EASE(reg=200.0).fit(held.train), held.train, test=held.test))


@pytest.fixture
def conversation(engine, tmp_path):
    # wishes need the encoder over the whole catalog; test_wishes.py covers them on a small one
    return Conversation(engine, store=SessionStore(tmp_path / "sessions.sqlite"), wish_scorer=None)


def _until_items(session, message: str, answer: str = "yes", limit: int = 5):
    """Send a message, answering the system's questions until it recommends."""
    turn = session.send(message)
    for _ in range(limit):
        if turn.items:
            return turn
        assert turn.question, turn.reply
        turn = session.send(answer)
    raise AssertionError("the system never recommended")


def engine_position(session, item_id: str) -> int:
    return session.conversation.catalog.position(item_id)


def _genres(engine, item):
    return set(engine.catalog.values("genres", engine.catalog.position(item["item_id"])))


def test_flagship_request_is_honoured_and_explained(conversation, engine):
    session = conversation.start()
    turn = session.send("a funny animated film from the 90s, like Toy Story, nothing scary")
    assert turn.items and turn.question is None
    for item in turn.items:
        position = engine.catalog.position(item["item_id"])
        assert engine.catalog.titles[position] == item["title"]  # only real catalog items
        assert {"Comedy", "Animation"} <= _genres(engine, item)
        assert "Horror" not in _genres(engine, item)
        assert 1990 <= item["year"] <= 1999
        assert item["title"] != "Toy Story (1995)"
        explanation = item["explanation"]
        cited = [c["title"] for c in explanation["history"]]
        assert cited in ([], ["Toy Story (1995)"])
        assert ("Toy Story (1995)" in explanation["text"]) == bool(cited)
        assert explanation["recommended"] and explanation["rank"] <= 10
        assert explanation["confidence"]["label"] in {"high", "medium", "low"}
    # the core item shape (ItemList.to_dicts), ranked as shown, typed as the API types it
    assert [item["rank"] for item in turn.items] == list(range(1, len(turn.items) + 1))
    scores = [item["score"] for item in turn.items]
    assert scores == sorted(scores, reverse=True)
    for item in turn.items:
        assert item["because"] == item["explanation"]["history"]
        assert (
            TurnExplanationData.model_validate(item["explanation"]).model_dump()
            == (item["explanation"])
        )
    top = turn.items[0]["explanation"]
    assert top["history_method"] == "exact"
    assert top["history"][0]["share"] == pytest.approx(1.0)
    assert turn.state["liked"] == [engine.catalog.position("1")]
    for item in turn.items:  # the conversation's own score, term by term
        terms = item["explanation"]["terms"]
        assert {"history", "popularity"} <= set(terms)
        assert sum(terms.values()) == pytest.approx(item["score"], abs=1e-5)


def test_a_cold_list_is_explained_by_what_ranked_it(conversation):
    """With no liked title, the list is ranked by popularity within what was asked (and
    a critique steers it): the words say so, never "not explained by any single item"."""
    session = conversation.start()
    turn = _until_items(session, "a comedy from the 1980s", answer="no")
    steered = _until_items(session, "something more recent", answer="no")
    for listed in (turn, steered):
        for item in listed.items:
            explanation = item["explanation"]
            assert "how well known it is" in explanation["text"]
            assert "not explained" not in explanation["text"]
            terms = explanation["terms"]
            assert sum(terms.values()) == pytest.approx(item["score"], abs=1e-5)
    assert any("steering" in item["explanation"]["terms"] for item in steered.items)


def test_critiques_why_and_rejections(conversation):
    session = conversation.start(user_id="1")
    # a yes is a hard constraint: answering no keeps candidates for the lists that follow
    first = _until_items(session, "something with action", answer="no")
    shown = [i["item_id"] for i in first.items]
    assert shown
    why = session.send("why the second one?")
    assert first.items[1]["title"] in why.reply
    again = _until_items(session, "not that one", answer="no")
    assert first.items[1]["item_id"] not in [i["item_id"] for i in again.items]
    assert int(engine_position(session, first.items[1]["item_id"])) in session.state.rejected
    after_all = _until_items(session, "none of these", answer="no")
    rejected = set(after_all.state["rejected"])
    assert after_all.items
    assert not rejected & {int(p) for p in after_all.state["shown"]}


def test_questions_are_answered_with_yes_and_no(engine, tmp_path):
    """A policy that asks whenever it can (any gain) must ask; "yes" then wants the asked
    value, "no" rules it out."""
    eager = Conversation(
        engine,
        store=SessionStore(tmp_path / "eager.sqlite"),
        policy=PolicyConfig(ask_margin=-1.0),
        wish_scorer=None,
    )
    for answer, wanted in (("yes", True), ("no", False)):
        session = eager.start()
        turn = session.send("I want a movie")
        assert turn.question is not None and session.state.pending is not None
        pending = session.state.pending
        assert pending.kind == "attribute" and pending.field and pending.value
        session.send(answer)
        state = session.state
        included = pending.value in state.include.get(pending.field, [])
        excluded = pending.value in {
            *state.exclude.get(pending.field, []),
            *state.soft_exclude.get(pending.field, []),
        }
        assert (included, excluded) == (wanted, not wanted), (answer, pending)


def test_a_first_list_carries_the_question_and_one_reply_answers_both(engine, tmp_path):
    """A specific first request gets its list at once; the question the policy would ask
    if the list misses rides along, and "yes, none of these" both answers it and rejects
    the list, so the user's turn is not spent on a list alone."""
    eager = Conversation(
        engine,
        store=SessionStore(tmp_path / "eager.sqlite"),
        policy=PolicyConfig(ask_margin=-1.0),
        wish_scorer=None,
    )
    session = eager.start()
    first = session.send("something with comedy")
    assert first.items and first.question
    assert first.reply.endswith(first.question)
    asked = session.state.pending
    assert asked.kind == "attribute" and (asked.field, asked.value) != ("genres", "Comedy")
    shown = {int(p) for p in first.state["shown"]}
    second = session.send("yes, none of these")
    state = session.state
    assert asked.value in state.include.get(asked.field, [])
    assert shown <= set(state.rejected)
    assert not shown & {engine_position(session, i["item_id"]) for i in second.items}
    for item in second.items:  # the answer is a hard constraint on what follows
        position = engine_position(session, item["item_id"])
        assert eager.space.has(position, asked.field, asked.value)


def test_session_survives_a_restart(engine, tmp_path):
    path = tmp_path / "sessions.sqlite"
    first = Conversation(engine, store=SessionStore(path), wish_scorer=None)
    session = first.start()
    _until_items(session, "a funny animated film from the 90s")
    state = session.state.to_dict()
    resumed = Conversation(engine, store=SessionStore(path), wish_scorer=None).resume(session.id)
    assert resumed.state.to_dict() == state
    messages = resumed.conversation.store.messages(session.id)
    assert [m["role"] for m in messages][:2] == ["user", "assistant"]
    assert len(messages) % 2 == 0
    turn = resumed.send("why the first one?")
    assert turn.items


def test_bad_inputs_keep_the_state(conversation):
    session = conversation.start()
    session.send("comedies from the 90s")
    before = session.state.include.copy()
    empty = session.send("")
    assert "didn't catch" in empty.reply
    unknown = session.send("like Qwxz Plorfing Vrumble")
    assert "don't know" in unknown.reply
    assert session.state.include == before
    contradiction = session.send("comedy but not comedy")
    assert contradiction.question and "Comedy" in contradiction.question
    long = session.send("funny " * 500)
    assert "cut" in long.reply
    with pytest.raises(NotFoundError):
        conversation.resume("no-such-session")


def test_restart_forgets_the_dialogue(conversation):
    session = conversation.start(user_id="1")
    session.send("no horror, from the 80s")
    session.send("start over")
    assert session.state.exclude == {} and session.state.year_min is None
    assert session.state.history  # the user's own history stays


def test_the_policy_allows_what_the_engine_allows(ml_small, tmp_path):
    """Items the user met without liking (feedback) leave the conversation's candidates as
    they leave the engine's lists: the policy narrows the engine's allowed set."""
    held = split(ml_small.kcore(10), "loo", seed=0)
    engine = Engine(Bundle(EASE(reg=200.0).fit(held.train), held.train, test=held.test))
    conversation = Conversation(engine, store=SessionStore(tmp_path / "s.sqlite"), wish_scorer=None)
    session = conversation.start(user_id="1")
    scorer = conversation.scorer
    before = scorer.allowed(session.state)
    met = [int(p) for p in np.flatnonzero(before)[:3]]
    engine.mark_seen("1", [engine.catalog.item_ids[p] for p in met])
    after = scorer.allowed(session.state)
    assert not after[met].any() and (before & ~after).sum() == len(met)
    query = scorer.query(session.state)
    assert not (after & ~engine.allowed(query, engine.history_of(query))).any()
