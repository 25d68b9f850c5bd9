"""LLM understanding: a message → the same dialogue acts as the embedded understander.

The LLM answers in a JSON schema (`DialogueActs`); whyrec then grounds the answer in
the catalog itself: titles are resolved with the catalog's title matching (unknown ones
become "I don't know a film called ..."), attribute values must exist in the catalog
(others become soft wishes), years must be plausible. The result is an `Understanding`,
so the dialogue state, the policy and the replies cannot tell which understander ran.
Invalid output gets one repair attempt; then the embedded understanding takes the turn.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz import fuzz, process

from whyrec.conversation.understanding import (
    MAYBE_TITLE_SCORE,
    SURE_TITLE_SCORE,
    Intent,
    ItemMention,
    Understander,
    Understanding,
    unique_mentions,
)
from whyrec.data.catalog import Catalog, title_key
from whyrec.errors import NotFoundError
from whyrec.llm.client import CHARS_PER_TOKEN, CallContext, LLMClient
from whyrec.llm.prompts import system_message
from whyrec.llm.structured import ask_structured, schema_of

VOCABULARY_TOKENS = 40
"""Estimated tokens of attribute values listed with one message (those that may be written
in it), and again of each field's most frequent ones in the shared system message. A short
prompt keeps small local models fast; answers may still name any catalog value, and every
value is checked against the catalog."""
RELEVANT_SCORE = 90.0
"""Partial similarity to the message at which a value counts as possibly written in it."""
MIN_RELEVANT_CHARS = 3
"""Shorter values match inside too many words to count as written."""
TEXT_CHARS = 60
"""Longest title, value or wish in an answer: short enough for grammar-constrained servers
to keep as a bound (a weak model writing on inside one string stops there), long enough
for what a user types in a chat message."""
ACTS_MAX_TOKENS = 160
"""Completion cap of the dialogue-acts answer (a typical one is 20-80 tokens): a weak
model rambling inside the grammar's strings stops early instead of eating the turn."""
MIN_YEAR, MAX_YEAR = 1870, 2100
WRITTEN_TITLE_SCORE = 80.0
"""Partial similarity to the message at which a title counts as written by the user."""
MAX_PROFILE_NOTES = 12
"""Notes kept per kind (likes, dislikes, constraints), newest first."""

IntentName = Literal[
    "recommend", "why", "more_like", "reject", "reject_all", "accept", "restart", "yes", "no"
]


class TitleAct(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=TEXT_CHARS, description="A film title as the user wrote it")
    liked: bool = Field(description="True if the user likes it, False if they dislike it")


class ValueAct(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(max_length=60, description="An attribute field, e.g. genres or tags")
    value: str = Field(max_length=TEXT_CHARS, description="A value of that field")
    include: bool = Field(description="True if wanted, False if unwanted")


class WishAct(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=TEXT_CHARS, description="A descriptive wish no field covers")
    positive: bool = True


class YearRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int
    high: int


class ProfileNotes(BaseModel):
    """Short notes about the user, kept across turns (RecLLM's profile), read off each
    turn's grounded understanding."""

    model_config = ConfigDict(extra="forbid")
    likes: list[str] = Field(default_factory=list)
    dislikes: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)


class DialogueActs(BaseModel):
    """What one user message says, in the acts the recommender understands."""

    model_config = ConfigDict(extra="forbid")
    intents: list[IntentName] = Field(max_length=4)
    titles: list[TitleAct] = Field(default_factory=list, max_length=10)
    values: list[ValueAct] = Field(default_factory=list, max_length=12)
    year_min: int | None = None
    year_max: int | None = None
    excluded_years: list[YearRange] = Field(default_factory=list, max_length=4)
    wishes: list[WishAct] = Field(default_factory=list, max_length=4)
    reference: int | None = Field(
        default=None, description="0-based index into the shown list; -1 for the last one"
    )
    subject_title: str | None = Field(
        default=None, max_length=TEXT_CHARS, description="The film a why-question names"
    )
    answer: bool | None = Field(default=None, description="A yes or no the message starts with")


def answer_schema(fields: list[str]) -> dict:
    """The dialogue acts' schema as sent: a value's field is one of the catalog's fields
    (a grammar-constrained server then writes a real field name, and nothing longer).
    Validation stays with `DialogueActs`: a field outside the catalog from a server
    without a grammar becomes a wish when grounded."""
    schema = schema_of(DialogueActs)
    if fields:
        schema["$defs"]["ValueAct"]["properties"]["field"]["enum"] = list(fields)
    return schema


class Vocabulary:
    """Attribute values shown to the LLM, under a token estimate each: those a message may
    contain (fuzzy match), with the message; the most frequent ones of each field, in the
    shared system message."""

    def __init__(self, catalog: Catalog, tokens: int = VOCABULARY_TOKENS) -> None:
        self.chars = tokens * CHARS_PER_TOKEN
        self.by_frequency = {
            name: [v for v, _ in catalog.value_counts(name).most_common()]
            for name in catalog.fields
        }
        self.matchable = {
            name: [v for v in values if len(v) >= MIN_RELEVANT_CHARS]
            for name, values in self.by_frequency.items()
        }

    def relevant(self, message: str) -> list[tuple[str, str]]:
        """(field, value) pairs that may be written in the message, best first."""
        text = message.lower()
        found = []
        for name, values in self.matchable.items():
            for value, score, _ in process.extract(
                text,
                values,
                scorer=fuzz.partial_ratio,
                processor=str.lower,
                score_cutoff=RELEVANT_SCORE,
                limit=None,
            ):
                found.append((score, name, value))
        found.sort(key=lambda f: -f[0])
        return [(name, value) for _, name, value in found]

    def for_message(self, message: str) -> dict[str, str]:
        """Field → the values that may be written in `message` (comma-separated, fewer
        tokens than a list), within the character budget."""
        return self._within_budget(self.relevant(message))

    def common(self) -> dict[str, str]:
        """Field → its most frequent values, taking turns between fields, within the
        character budget: the same for every message, so they go in the shared system
        message (read once per conversation by a server with a prompt cache)."""
        rounds = max((len(v) for v in self.by_frequency.values()), default=0)
        pairs = (
            (name, values[rank])
            for rank in range(rounds)
            for name, values in self.by_frequency.items()
            if rank < len(values)
        )
        return self._within_budget(pairs)

    def _within_budget(self, pairs) -> dict[str, str]:
        chosen: dict[str, list[str]] = {name: [] for name in self.by_frequency}
        used = 0
        for name, value in pairs:
            cost = len(value) + 2  # comma, space
            if value in chosen[name] or used + cost > self.chars:
                continue
            chosen[name].append(value)
            used += cost
        return {name: ", ".join(values) for name, values in chosen.items() if values}


class LLMUnderstander:
    """Asks the LLM for dialogue acts and grounds them in the catalog."""

    def __init__(self, client: LLMClient, embedded: Understander) -> None:
        self.client = client
        self.embedded = embedded
        self.catalog = embedded.catalog
        self.popularity = embedded.popularity
        self.vocabulary = Vocabulary(self.catalog)
        self._system = system_message(
            "dialogue_acts", self.catalog.fields, self.vocabulary.common()
        )
        self._schema = answer_schema(self.catalog.fields)
        self._values = {
            name.lower(): (name, {v.lower(): v for v in self.catalog.value_counts(name)})
            for name in self.catalog.fields
        }

    def messages(self, text: str, shown: list[int], pending: str | None, profile: dict) -> list:
        facts = {
            "message": text,
            # titles by position: the acts point at the list by index, never by id, and a
            # short list keeps the prompt small for local models
            "shown": [f"{i}: {self.catalog.titles[p]}" for i, p in enumerate(shown)],
            "pending_question": pending,
            "profile": profile,
            "values": self.vocabulary.for_message(text),
        }
        # only the facts that apply: every key costs a small model's reading time
        facts = {k: v for k, v in facts.items() if v or k == "message"}
        return [
            self._system,
            {"role": "user", "content": json.dumps(facts, ensure_ascii=False)},
        ]

    def understand(
        self,
        ctx: CallContext,
        text: str,
        shown: list[int],
        pending: str | None,
        profile: dict,
    ) -> tuple[Understanding, dict]:
        """(understanding, trace). Falls back to the embedded one."""
        acts, record = ask_structured(
            self.client,
            ctx,
            "dialogue_acts",
            DialogueActs,
            self.messages(text, shown, pending, profile),
            max_tokens=min(ACTS_MAX_TOKENS, self.client.config.max_tokens),
            schema=self._schema,
        )
        if acts is None:
            record["source"] = "embedded"
            return self.embedded.understand(text, shown=shown), record
        understanding, dropped = self.ground(acts, shown, text)
        if dropped:
            record["grounding"] = dropped
        if not (understanding.intents or understanding.unknown_titles):
            # a weak model's empty reading must not cost the user a turn ("I didn't catch
            # that") when the embedded understander reads the message
            embedded = self.embedded.understand(text, shown=shown)
            if embedded.intents:
                record.update(source="embedded", result="empty")
                return embedded, record
        record["source"] = "llm"
        return understanding, record

    # ----- grounding ----------------------------------------------------------------------
    def ground(
        self, acts: DialogueActs, shown: list[int], message: str = ""
    ) -> tuple[Understanding, list[str]]:
        """The acts as an `Understanding`, every item and value checked against the catalog
        and every title against the message (a title the user did not write is the LLM's
        invention, not the user's wish); returns what was changed or dropped, for the trace."""
        said = Understanding(intents=[Intent(i) for i in dict.fromkeys(acts.intents)])
        dropped: list[str] = []
        written = title_key(message, keep_year=False)
        for act in acts.titles:
            if not _written_in(act.title, written):
                dropped.append(f"title {act.title!r} is not in the message")
                continue
            self._ground_title(act.title, act.liked, said, dropped)
        plain = self._plain_values(message, shown) if acts.values else {}
        for act in acts.values:
            self._ground_value(act, said, dropped, message, plain)
        said.year_min = self._year(acts.year_min, dropped)
        said.year_max = self._year(acts.year_max, dropped)
        for span in acts.excluded_years:
            low, high = sorted((span.low, span.high))
            if low >= MIN_YEAR and high <= MAX_YEAR:
                said.excluded_years.append((low, high))
            else:
                dropped.append(f"excluded years {low}-{high} out of range")
        said.soft_wishes += [(w.text.strip(), w.positive) for w in acts.wishes if w.text.strip()]
        if acts.reference is not None:
            if shown and -len(shown) <= acts.reference < len(shown):
                said.reference = acts.reference
            else:
                dropped.append(f"reference {acts.reference} outside the shown list")
        if acts.subject_title and not _written_in(acts.subject_title, written):
            dropped.append(f"subject {acts.subject_title!r} is not in the message")
        elif acts.subject_title:
            self._ground_subject(acts.subject_title, shown, said, dropped)
        said.answer = acts.answer
        said.mentions = unique_mentions(said.mentions)
        if not said.intents and (said.mentions or said.constraints or said.soft_wishes):
            said.intents.append(Intent.RECOMMEND)
        Understander._find_contradictions(said)
        return said, dropped

    def _match(self, title: str) -> tuple[int, float] | None:
        try:
            found = self.catalog.match_title(title, self.popularity)
        except NotFoundError:
            return None
        return found.position, found.score

    def _ground_title(self, title: str, liked: bool, said: Understanding, dropped: list) -> None:
        matched = self._match(title)
        if matched is None or matched[1] < MAYBE_TITLE_SCORE:
            said.unknown_titles.append((title, self.catalog.suggest_titles(title)))
            dropped.append(f"title {title!r} is not in the catalog")
            return
        position, score = matched
        mention = ItemMention(position, self.catalog.titles[position], liked, score, title)
        (said.mentions if score >= SURE_TITLE_SCORE else said.uncertain).append(mention)

    def _plain_values(self, message: str, shown: list[int]) -> dict[tuple[str, str], bool]:
        """(field, value) → hard, for the values the embedded understander reads in the
        message: one rule decides what a plain statement is, whichever understander ran."""
        if not message:
            return {}
        read = self.embedded.understand(message, shown=shown)
        return {(c.field, c.value): c.hard for c in read.constraints}

    def _ground_value(
        self, act, said: Understanding, dropped: list, message: str, plain: dict
    ) -> None:
        from whyrec.conversation.understanding import Constraint

        field_name, value = act.field.strip().lower(), act.value.strip()
        if field_name in ("decade", "year", "years") and value[:4].isdigit():
            start = int(value[:4]) // 10 * 10
            if act.include:
                said.year_min = max(said.year_min or start, start)
                said.year_max = min(said.year_max or start + 9, start + 9)
            else:
                said.excluded_years.append((start, start + 9))
            return
        known = self._values.get(field_name)
        if known is None or value.lower() not in known[1]:
            said.soft_wishes.append((value, act.include))
            dropped.append(f"value {act.field}={value!r} is not in the catalog; kept as a wish")
            return
        name, values = known
        canonical = values[value.lower()]
        hard = plain.get((name, canonical))
        if hard is None:
            hard = _said_plainly(value, message)
        constraint = Constraint(name, canonical, act.include, hard, value)
        if constraint not in said.constraints:
            said.constraints.append(constraint)

    def _ground_subject(
        self, title: str, shown: list[int], said: Understanding, dropped: list
    ) -> None:
        matched = self._match(title)
        if matched is None or matched[1] < SURE_TITLE_SCORE:
            dropped.append(f"subject {title!r} is not in the catalog")
            if said.reference is None and Intent.WHY in said.intents:
                said.unknown_titles.append((title, self.catalog.suggest_titles(title)))
            return
        position = matched[0]
        if position in shown and said.reference is None:
            said.reference = shown.index(position)
        else:
            said.subject = position

    @staticmethod
    def _year(year: int | None, dropped: list) -> int | None:
        if year is None or MIN_YEAR <= year <= MAX_YEAR:
            return year
        dropped.append(f"year {year} out of range")
        return None


def _written_in(title: str, written_key: str) -> bool:
    """Whether the user's message (as a title key) contains the title, typos allowed."""
    key = title_key(title, keep_year=False)
    if not key:
        return False
    if f" {key} " in f" {written_key} ":
        return True
    return fuzz.partial_ratio(key, written_key) >= WRITTEN_TITLE_SCORE


def _said_plainly(value: str, message: str) -> bool:
    """For a value the embedded understander did not read: hard when written in the
    message in a clause no softening word softens (the same rule); a value the LLM
    inferred but the user did not write only ranks (the model's reading, not the user's
    words)."""
    found = re.search(rf"(?<![\w']){re.escape(value.lower())}(?![\w'])", message.lower())
    return found is not None and not Understander._is_softened(message, *found.span())


def merge_profile(memory: dict, said: Understanding, catalog) -> dict:
    """The session's profile after one turn: notes read off the grounded understanding
    (never the LLM's own words: only what was checked against the catalog and the
    message), newest first, a phrase never both liked and disliked."""
    notes = notes_from(said, catalog)
    if Intent.RESTART in said.intents:
        memory = {}
    merged = {k: list(memory.get(k, [])) for k in ("likes", "dislikes", "constraints")}
    for key, opposite in (("likes", "dislikes"), ("dislikes", "likes"), ("constraints", None)):
        for phrase in getattr(notes, key):
            phrase = " ".join(phrase.split())[:80]
            if not phrase:
                continue
            lowered = phrase.lower()
            merged[key] = [p for p in merged[key] if p.lower() != lowered]
            merged[key].insert(0, phrase)
            if opposite:
                merged[opposite] = [p for p in merged[opposite] if p.lower() != lowered]
        merged[key] = merged[key][:MAX_PROFILE_NOTES]
    return {k: v for k, v in merged.items() if v}


def notes_from(said: Understanding, catalog) -> ProfileNotes:
    """Profile notes from an understanding (when the LLM gave none)."""
    likes = [m.title for m in said.mentions if m.liked]
    dislikes = [m.title for m in said.mentions if not m.liked]
    likes += [c.value for c in said.constraints if c.include]
    dislikes += [c.value for c in said.constraints if not c.include]
    likes += [t for t, positive in said.soft_wishes if positive]
    dislikes += [t for t, positive in said.soft_wishes if not positive]
    constraints = []
    if said.year_min or said.year_max:
        constraints.append(f"years {said.year_min or '…'}-{said.year_max or '…'}")
    constraints += [f"not {low}-{high}" for low, high in said.excluded_years]
    return ProfileNotes(likes=likes[:8], dislikes=dislikes[:8], constraints=constraints[:8])
