"""Replies are checked before anyone reads them: every item named must be a permitted one.

The LLM is asked to refer to items only as `[[item_id]]`; whyrec replaces each marker
with the catalog's title. Everything else the LLM wrote is scanned for names: runs of
capitalised words (and quoted or emphasised phrases) must be part of a permitted title
(the candidates, the items the user talked about, the items cited as evidence) or an
attribute value of the catalog. A marker with an unknown id, a catalog title outside the
permitted items, or a name that is neither (an invented film, an actor no evidence
mentions) is a violation; the caller then repairs the reply or replaces it.

This is deliberately strict: a false alarm costs an LLM phrasing (the embedded reply is
shown), a missed invented title would show the user something that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from whyrec.conversation.lexicon import GENRE_SYNONYMS
from whyrec.data.catalog import Catalog, title_key

MARKER = re.compile(r"\[\[\s*([^\[\]]{1,64}?)\s*\]\]")
_YEAR = re.compile(r"\(\d{4}\)")
_WORD = re.compile(r"[^\W_][\w'’&-]*")
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»\n]{2,120})[\"“”«»]|\*\*?([^*\n]{2,120})\*\*?")
_CONNECTORS = {"of", "the", "and", "in", "a", "an", "on", "to", "for", "at", "de", "la", "le"}
_COMMON_CAPITALS = set(
    "the a an i i'm i'd i've it it's its this that these those they them their there here "
    "if and but or so because since as also both all any each every some many most more "
    "you your you're you'll we our my me he she his her how what why when where which who "
    "yes no not nothing none great good nice sure okay ok thanks thank please enjoy "
    "first second third fourth fifth last next then finally plus like unlike compared "
    "while though although overall number item items film films movie movies pick picks "
    "confidence because based given".split()
)


@dataclass
class GuardResult:
    text: str
    """The reply with markers replaced by catalog titles."""
    problems: list[str] = field(default_factory=list)
    named: list[int] = field(default_factory=list)
    """Catalog positions the reply names (markers and recognised titles)."""

    @property
    def ok(self) -> bool:
        return not self.problems


class ReplyGuard:
    """Checks LLM text against one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._title_owner = catalog.title_index.by_key_no_year
        vocabulary = {name.lower() for name in catalog.fields}
        for name in catalog.fields:
            vocabulary |= {title_key(v, keep_year=False) for v in catalog.value_counts(name)}
        for words in GENRE_SYNONYMS.values():
            vocabulary |= {title_key(w, keep_year=False) for w in words}
        vocabulary |= {"science fiction", "film noir", "sci fi"}
        self._vocabulary = {v for v in vocabulary if v}

    def check(self, text: str, permitted: Iterable[int]) -> GuardResult:
        allowed = {int(p) for p in permitted}
        allowed_keys = [title_key(self.catalog.titles[p], keep_year=False) for p in allowed]
        result = GuardResult(text="")
        pieces, last = [], 0
        scrubbed = []  # the text without markers, for the name scan
        for found in MARKER.finditer(text):
            pieces.append(text[last : found.start()])
            scrubbed.append(text[last : found.start()])
            scrubbed.append(" · ")
            item_id = found.group(1).strip()
            if not self.catalog.has(item_id):
                result.problems.append(f"[[{item_id}]] is not an item id of the catalog")
                pieces.append(found.group(0))
            else:
                position = self.catalog.position(item_id)
                if position not in allowed:
                    result.problems.append(
                        f"[[{item_id}]] ({self.catalog.titles[position]}) is not one of the "
                        "items given"
                    )
                result.named.append(position)
                pieces.append(self.catalog.titles[position])
            last = found.end()
        pieces.append(text[last:])
        scrubbed.append(text[last:])
        result.text = "".join(pieces)
        plain = "".join(scrubbed)
        for found in _YEAR.finditer(plain):
            # "Title (Year)" is how a film is named: in the LLM's own words only after a
            # given item's title (a weak model writes "The (2014)" for a film it invents)
            before = plain[: found.end()].rstrip()
            if not any(before.endswith(self.catalog.titles[p]) for p in allowed):
                result.problems.append(
                    f"writes {found.group(0)!r} without a given item's title before it"
                )
        for phrase, initial in self._names(plain):
            problem = self._judge(phrase, initial, allowed, allowed_keys, result)
            if problem and problem not in result.problems:
                result.problems.append(problem)
        return result

    # ----- finding names ------------------------------------------------------------------
    def _names(self, text: str) -> list[tuple[str, bool]]:
        """Candidate names: capitalised runs and quoted phrases, with "starts a sentence"."""
        names: list[tuple[str, bool]] = []
        for found in _QUOTED.finditer(text):
            phrase = (found.group(1) or found.group(2) or "").strip()
            if phrase[:1].isupper() or phrase[:1].isdigit():
                names.append((phrase, False))
        words = list(_WORD.finditer(text))
        run: list[str] = []
        run_initial = False
        pending: list[str] = []  # connectors waiting for the next capitalised word

        def close() -> None:
            nonlocal run, pending
            if run:
                names.append((" ".join(run), run_initial))
            run, pending = [], []

        for index, found in enumerate(words):
            word = found.group(0)
            gap = text[words[index - 1].end() : found.start()] if index else text[: found.start()]
            breaks = bool(re.search(r"[.!?:;,()\n\"“”—]|\s-\s", gap)) or index == 0
            initial = index == 0 or bool(re.search(r"[.!?:\n]\s*(?:\d+[.)]\s*)?$", gap + " "))
            if breaks:
                close()
            capital = word[:1].isupper() or (word[:1].isdigit() and bool(run))
            if capital:
                if not run:
                    run_initial = initial
                run += [*pending, word]
                pending = []
            elif run and word.lower() in _CONNECTORS:
                pending.append(word)
            else:
                close()
        close()
        return names

    def _judge(
        self,
        phrase: str,
        initial: bool,
        allowed: set[int],
        allowed_keys: list[str],
        result: GuardResult,
    ) -> str | None:
        words = phrase.split()
        while words and words[0].lower().strip("'’") in _COMMON_CAPITALS:
            words = words[1:]  # "Because", "You", "The" opening a sentence
        versions = [title_key(v, keep_year=False) for v in (phrase, " ".join(words))]
        versions = [v for v in dict.fromkeys(versions) if v]
        if not words or not versions:
            return None
        for key in versions:
            if key in self._vocabulary or any(key in k for k in allowed_keys):
                return None
        for key in versions:
            owners = self._title_owner.get(key)
            if owners and not any(o in allowed for o in owners):
                result.named.append(owners[0])
                return (
                    f"names {self.catalog.titles[owners[0]]!r}, which is not one of the items given"
                )
            if owners:
                return None
        key = versions[-1]
        if len(key.split()) < 2:
            return None
        if all(part in self._vocabulary or part in _COMMON_CAPITALS for part in key.split()):
            return None
        return f"names {phrase!r}, which is neither a given item nor in the catalog"
