"""An LLM-driven simulated user (RecLLM, iEvaLM): free talk about a hidden target.

The user is shown the target's attributes, never its title, and phrases the moves of the
language user (opening, yes/no answers, rejections) in its own words. What it answers
is decided by whyrec from the target's attributes, so answers stay truthful; the LLM
only words them. A message that names the target's title anyway is refused (one repair,
then the template phrasing), so an episode cannot be won by leaking the answer.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz

from whyrec.data.catalog import title_key
from whyrec.evaluation.simulated_users import Episode, LanguageUser
from whyrec.llm.client import CallContext, LLMClient, TokenBudget
from whyrec.llm.config import LLMConfig
from whyrec.llm.structured import ask_structured

TITLE_LEAK_SCORE = 85.0
"""Partial similarity of a message to the target's title at which it counts as named."""
MAX_TAGS = 8

SYSTEM = """task: simulated_user
You play a person chatting with a film recommender. You have one particular film in mind;
you know only its attributes (given), never say or hint at its title. Say what the
`act` asks in one or two casual sentences: "open" = ask for a film with some of these
attributes; "answer" = answer the recommender's question with the given yes/no; "reject"
= say none of the suggestions is it. Reply as JSON: {"message": "..."}."""


class UserMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=500)


class LLMUser(LanguageUser):
    """A `LanguageUser` whose words come from the LLM, with the template as fallback."""

    def __init__(self, space, catalog, rng, config: LLMConfig, client=None, seed: int = 0) -> None:
        super().__init__(space, catalog, rng, seed)
        self.config = config
        self.client = client or LLMClient(config)
        self.budget = TokenBudget(config.token_budget)
        self.target: int | None = None
        self.last_reply = ""
        self.stats = {"messages": 0, "from_llm": 0, "fallbacks": 0, "title_leaks_blocked": 0}

    def begin(self, episode: Episode) -> None:
        self.target = episode.target
        self.budget = TokenBudget(self.config.token_budget)
        self.last_reply = ""

    def observe(self, reply: str) -> None:
        self.last_reply = reply[:600]

    def attributes(self) -> dict:
        assert self.target is not None
        found = {
            name: list(self.catalog.values(name, self.target))[:MAX_TAGS]
            for name in self.catalog.fields
        }
        found = {k: v for k, v in found.items() if v}
        year = self.catalog.year(self.target)
        return found | ({"year": year} if year else {})

    def names_target(self, message: str) -> bool:
        """Whether a message gives the target's title away (typos and partial forms too)."""
        assert self.target is not None
        key = title_key(self.catalog.titles[self.target], keep_year=False)
        said = title_key(message, keep_year=False)
        if not key:
            return False
        if f" {key} " in f" {said} ":
            return True
        return len(key) >= 6 and fuzz.partial_ratio(key, said) >= TITLE_LEAK_SCORE

    def _say(self, act: str, fallback: str, answer: bool | None = None) -> str:
        self.stats["messages"] += 1
        if self.target is None:
            self.stats["fallbacks"] += 1
            return fallback
        facts = {
            "act": act,
            "attributes": self.attributes(),
            "answer": answer,
            "recommender_said": self.last_reply,
        }
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": json.dumps(facts, ensure_ascii=False)},
        ]

        def check(answer_: UserMessage) -> None:
            if self.names_target(answer_.message):
                self.stats["title_leaks_blocked"] += 1
                raise ValueError("the message names the film's title; describe it instead")

        ctx = CallContext.for_turn(self.config, self.budget)
        said, _ = ask_structured(self.client, ctx, "simulated_user", UserMessage, messages, check)
        if said is None:
            self.stats["fallbacks"] += 1
            return fallback
        self.stats["from_llm"] += 1
        return said.message

    def opening_text(self, field_name: str, value: str) -> str:
        return self._say("open", super().opening_text(field_name, value))

    def answer_text(self, yes: bool) -> str:
        return self._say("answer", super().answer_text(yes), answer=yes)

    def reject_text(self) -> str:
        return self._say("reject", super().reject_text())
