"""Simulated users for conversational evaluation (the EAR/CPR multi-round protocol).

The users and one episode of each kind live here; `whyrec.evaluation.conversational`
runs policies over many episodes and summarizes them.

Each episode hides a target item. In attribute mode the user and the system exchange
structured acts: the user opens with one attribute value of the target, answers each
question truthfully from the target's attributes, rejects recommendation lists that
miss the target and accepts the list that holds it. Language mode plays the same user
through the full text path (understanding included), phrasing each act in varied words
with occasional typos, so the language understanding is measured too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from whyrec.conversation.conversation import Conversation
from whyrec.conversation.fields import AttributeSpace
from whyrec.conversation.policy import Policy
from whyrec.conversation.state import DialogueState
from whyrec.engine import Engine
from whyrec.errors import WhyrecError

USER_MODES = ("attribute", "language", "llm")


@dataclass(frozen=True)
class Episode:
    user_id: str | None
    target: int
    history: tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    success_turn: int | None
    rank: int | None
    turns: int


def hdcg(turn: int, rank: int) -> float:
    """UNICORN's hDCG for a hit at turn t (1-based) with the target at rank r (1-based)."""
    return 1 / math.log2(turn + 2) + (1 / math.log2(turn + 1) - 1 / math.log2(turn + 2)) / (
        math.log2(rank + 1)
    )


def episodes_from_targets(
    engine: Engine, targets: pd.DataFrame, limit: int, rng: np.random.Generator
) -> list[Episode]:
    """Episodes for (user_id, item_id) rows; unknown users start cold, unknown items fail."""
    catalog = engine.catalog
    if not {"user_id", "item_id"} <= set(targets.columns):
        raise WhyrecError("targets need the columns user_id and item_id")
    if targets.empty:
        raise WhyrecError("there are no targets to simulate")
    order = rng.permutation(len(targets))[:limit]
    episodes = []
    known_users = engine.bundle.train.user_index
    for row in targets.iloc[order].itertuples(index=False):
        item_id, user_id = str(row.item_id), str(row.user_id)
        if not catalog.has(item_id):
            raise WhyrecError(f"target item {item_id!r} is not in the catalog")
        history = (
            tuple(int(p) for p in engine.user_history(user_id)) if user_id in known_users else ()
        )
        episodes.append(Episode(user_id, catalog.position(item_id), history))
    return episodes


class AttributeUser:
    """Answers in structured acts, truthfully, from the target's attributes."""

    def __init__(
        self, space: AttributeSpace, catalog, rng: np.random.Generator, seed: int = 0
    ) -> None:
        self.space = space
        self.catalog = catalog
        self.rng = rng
        self.seed = seed

    def opening_value(self, target: int) -> tuple[str, str] | None:
        """One random askable value of the target, as EAR's user opens with one attribute;
        a named value (not a number range) when the target has one.

        Drawn from the seed and the target alone, not from the shared stream: every policy
        and both user modes open an episode with the same value, so their differences
        are paired (the speaking user differs from the structured one only in words)."""
        columns = [self.space.columns[c] for c in self.space.columns_of(target)]
        named = [c for c in columns if c.kind != "range"] or columns
        if not named:
            return None
        draw = np.random.default_rng([self.seed, int(target)])
        chosen = named[int(draw.integers(len(named)))]
        return chosen.field, chosen.value

    def has(self, target: int, field_name: str, value: str) -> bool:
        return self.space.has(target, field_name, value)


_OPENINGS = [
    "I'm looking for {what}",
    "can you recommend {what}?",
    "something {what} please",
    "got any good {what}?",
    "i'd like {what} tonight",
    "show me {what}",
    "in the mood for {what}",
    "any ideas for {what}?",
]
_YES = [
    "yes",
    "yeah sure",
    "yep, that sounds right",
    "definitely",
    "sure",
    "yes please",
    "of course",
    "absolutely",
]
_FILLERS = ["", "hmm,", "sorry,", "honestly,", "well,", "actually,"]
_NO = ["no", "nope", "not really", "nah", "no thanks", "not at all"]
_REJECT = [
    "none of these",
    "not these, something else please",
    "show me something else",
    "none of these work for me",
    "something else",
    "different ones please",
]


class LanguageUser(AttributeUser):
    """The same user, speaking: varied phrasings, synonyms and a few typos."""

    typo_rate = 0.08

    def _typo(self, text: str) -> str:
        words = text.split()
        for i, word in enumerate(words):
            if len(word) > 4 and word.isalpha() and self.rng.random() < self.typo_rate:
                j = int(self.rng.integers(1, len(word) - 2))
                words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        return " ".join(words)

    def _choice(self, options: list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def describe(self, field_name: str, value: str) -> str:
        """The value in the catalog's own words, sometimes with its field's name."""
        column = self.space.column(field_name, value)
        word = self.space.columns[column].words if column is not None else value
        return self._choice(
            [f"something {word}", f"a {word} one", f"{field_name} {word}", f"with {word}"]
        )

    def opening_text(self, field_name: str, value: str) -> str:
        """An opening sentence; typos go into the filler words only, as a test of robustness
        rather than of guessing: a misspelled attribute word cannot be understood."""
        before, _, after = self._choice(_OPENINGS).partition("{what}")
        lead = self._typo(before.strip())
        return f"{lead} {self.describe(field_name, value)}{after}".strip()

    def answer_text(self, yes: bool) -> str:
        return self._choice(_YES if yes else _NO)

    def answer_and_reject_text(self, yes: bool) -> str:
        """A rejected list and the answer to the question under it, in either order."""
        answer, reject = self.answer_text(yes), self.reject_text()
        return f"{answer}, {reject}" if self.rng.random() < 0.5 else f"{reject}, {answer}"

    def reject_text(self) -> str:
        """A rejection; as in openings, typos go into the filler words around it."""
        filler = self._typo(self._choice(_FILLERS))
        return f"{filler} {self._choice(_REJECT)}".strip()

    def begin(self, episode: Episode) -> None:
        """A new episode starts (an LLM-driven user learns its target here)."""

    def observe(self, reply: str) -> None:
        """The system's last reply (an LLM-driven user may react to it)."""


def run_attribute_episode(
    policy: Policy, user: AttributeUser, episode: Episode, max_turns: int, rng: np.random.Generator
) -> Outcome:
    state = DialogueState(user_id=episode.user_id, history=list(episode.history))
    opening = user.opening_value(episode.target)
    if opening is not None:
        state.add_value(opening[0], opening[1], include=True, hard=True)
        state.asked.append(list(opening))
    for turn in range(1, max_turns + 1):
        state.turn = turn
        action = policy.decide(state, rng)
        if action.kind == "ask":
            yes = user.has(episode.target, action.field, action.value)
            state.asked.append([action.field, action.value])
            state.add_value(action.field, action.value, include=yes, hard=True)
            state.consecutive_questions += 1
            continue
        state.listed(with_question=action.follow_up is not None)
        if episode.target in action.items:
            return Outcome(turn, action.items.index(episode.target) + 1, turn)
        for position in action.items:
            state.reject(position)
        if action.follow_up is not None:  # a list with a question: rejected and answered
            field_name, value = action.follow_up
            state.asked.append([field_name, value])
            state.add_value(
                field_name, value, include=user.has(episode.target, *action.follow_up), hard=True
            )
    return Outcome(None, None, max_turns)


def run_language_episode(
    conversation: Conversation, user: LanguageUser, episode: Episode, max_turns: int
) -> Outcome:
    state = DialogueState(user_id=episode.user_id, history=list(episode.history))
    session_id, token = conversation.store.create(state.to_dict(), episode.user_id)
    session = conversation.session_class(conversation, session_id, token, state)
    user.begin(episode)
    opening = user.opening_value(episode.target)
    message = user.opening_text(*opening) if opening else "recommend me something"
    for turn in range(1, max_turns + 1):
        reply = session.send(message)
        user.observe(reply.reply)
        pending = session.state.pending
        if reply.items:
            shown = [conversation.catalog.position(i["item_id"]) for i in reply.items]
            if episode.target in shown:
                return Outcome(turn, shown.index(episode.target) + 1, turn)
            if pending is not None and pending.kind == "attribute":  # a list with a question
                yes = user.has(episode.target, pending.field, pending.value)
                message = user.answer_and_reject_text(yes)
            else:
                message = user.reject_text()
        elif pending is not None and pending.kind == "attribute":
            message = user.answer_text(user.has(episode.target, pending.field, pending.value))
        elif pending is not None and pending.kind == "confirm_title":  # "did you mean X?"
            message = user.answer_text(pending.position == episode.target)
        elif pending is not None:
            message = user.answer_text(True)
        else:
            message = user.opening_text(*opening) if opening else "anything"
    return Outcome(None, None, max_turns)
