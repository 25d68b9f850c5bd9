"""Embedded language understanding: a message → dialogue acts, with no LLM.

Order matters: item titles are found first and cut out of the text, so "Scary Movie"
is a film and not a wish for horror; then years and decades, then attribute words with
their polarity ("nothing scary" excludes Horror), then intents. What is left of the
message that still carries meaning becomes a soft wish, matched later by the sentence
encoder. Unsure matches are returned as `uncertain`, for the policy to confirm with a
question rather than to act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from whyrec.conversation.lexicon import (
    CRITIQUE_WORDS,
    DECADE_WORDS,
    FACET_FIELDS,
    FACET_WORDS,
    NEGATION_CUES,
    QUALITY_WORDS,
    SOFTENERS,
    Lexicon,
    common_words,
)
from whyrec.data.catalog import Catalog, title_key, title_similarity

MAX_MESSAGE_CHARS = 1000
SURE_TITLE_SCORE = 92.0
"""Title matches at or above this are taken as said; between `MAYBE_TITLE_SCORE` and this
they are confirmed with the user first."""
MAYBE_TITLE_SCORE = 82.0
MAX_TITLE_WORDS = 9
TYPO_MIN_CHARS = 4
"""Shorter words are not corrected by any edit: one edit turns too many of them into
others. A three-letter word is only given back a dropped letter ("bst" → "best")."""
AGE_SHARE = 0.2
"""'recent' means the newest fifth of the catalog by year, 'old' the oldest fifth."""
NEGATION_WINDOW = 4
"""A negation cue affects an attribute word at most this many words after it (same clause)."""


class Intent(StrEnum):
    RECOMMEND = "recommend"
    WHY = "why"
    MORE_LIKE = "more_like"
    REJECT = "reject"
    REJECT_ALL = "reject_all"
    ACCEPT = "accept"
    RESTART = "restart"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True)
class ItemMention:
    position: int
    title: str
    liked: bool
    score: float
    text: str


@dataclass(frozen=True)
class Constraint:
    """An attribute value the user wants (`include`) or does not want.

    `hard` constraints filter the candidates (as a yes in EAR/CPR does); soft ones, said
    with a softening word ("ideally", "if possible"), only raise or lower scores.
    """

    field: str
    value: str
    include: bool
    hard: bool
    text: str


@dataclass(frozen=True)
class Critique:
    """Move the list along a direction: `kind` is year, popularity, quality or concept
    (then `concept` names it, e.g. "violence"), `sign` +1 for more, -1 for less."""

    kind: str
    sign: int
    concept: str
    text: str

    @property
    def act(self) -> str:
        if self.kind == "concept":
            return "critique:concept"
        return f"critique:{self.kind}{'+' if self.sign > 0 else '-'}"


@dataclass
class Understanding:
    intents: list[Intent] = field(default_factory=list)
    mentions: list[ItemMention] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    excluded_years: list[tuple[int, int]] = field(default_factory=list)
    soft_wishes: list[tuple[str, bool]] = field(default_factory=list)
    reference: int | None = None
    """Index into the items shown last turn ("the second one" → 1, "the last one" → -1)."""
    subject: int | None = None
    """Catalog position of an item asked about by title ("why Toy Story?")."""
    answer: bool | None = None
    """A yes or a no at the start of the message, whatever else it says ("no thanks")."""
    uncertain: list[ItemMention] = field(default_factory=list)
    unknown_titles: list[tuple[str, list[str]]] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    any_of: list[list[tuple[str, str]]] = field(default_factory=list)
    """Groups of wanted values of which an item needs one ("crime or film-noir")."""
    critiques: list[Critique] = field(default_factory=list)
    superlative: str | None = None
    """"quality", "classic", "underrated" or "popular": rank by that measure."""
    missing_facets: list[tuple[str, str]] = field(default_factory=list)
    """(facet, what the user gave for it) for facets this catalog has no field for."""

    @property
    def is_empty(self) -> bool:
        return not (
            self.intents
            or self.mentions
            or self.constraints
            or self.soft_wishes
            or self.year_min
            or self.year_max
            or self.uncertain
            or self.unknown_titles
            or self.excluded_years
            or self.any_of
            or self.critiques
            or self.superlative
            or self.missing_facets
        )

    def acts(self) -> list[str]:
        """The message as a flat list of dialogue acts (what the benchmark scores)."""
        acts = [f"intent:{i}" for i in self.intents]
        acts += [f"{'like' if m.liked else 'dislike'}:{m.title}" for m in self.mentions]
        acts += [
            f"{'include' if c.include else 'exclude'}:{c.field}={c.value}" for c in self.constraints
        ]
        acts += ["any_of:" + "|".join(sorted(f"{f}={v}" for f, v in g)) for g in self.any_of]
        if self.year_min is not None or self.year_max is not None:
            acts.append(f"years:{self.year_min or ''}-{self.year_max or ''}")
        acts += [f"exclude_years:{low}-{high}" for low, high in self.excluded_years]
        acts += [c.act for c in self.critiques]
        if self.superlative:
            acts.append(f"superlative:{self.superlative}")
        acts += [f"missing:{facet}" for facet, _ in self.missing_facets]
        if self.reference is not None:
            acts.append(f"ref:{self.reference}")
        return list(dict.fromkeys(acts))

    def to_dict(self) -> dict:
        return {
            "intents": [str(i) for i in self.intents],
            "mentions": [
                {
                    "item_position": m.position,
                    "title": m.title,
                    "liked": m.liked,
                    "score": round(m.score, 1),
                }
                for m in self.mentions
            ],
            "constraints": [c.__dict__ for c in self.constraints],
            "year_min": self.year_min,
            "year_max": self.year_max,
            "soft_wishes": [{"text": t, "positive": p} for t, p in self.soft_wishes],
            "reference": self.reference,
            "subject": self.subject,
            "answer": self.answer,
            "uncertain": [{"title": m.title, "text": m.text} for m in self.uncertain],
            "unknown_titles": [{"text": t, "suggestions": s} for t, s in self.unknown_titles],
            "contradictions": self.contradictions,
            "notes": self.notes,
            "any_of": [[list(pair) for pair in group] for group in self.any_of],
            "critiques": [c.__dict__ for c in self.critiques],
            "superlative": self.superlative,
            "missing_facets": [{"facet": f, "text": t} for f, t in self.missing_facets],
            "acts": self.acts(),
        }


# ----- patterns -----------------------------------------------------------------------
_LIKE_CUES = (
    r"similar to|something like|anything like|movies like|films like|such as|as good as|"
    r"in the style of|along the lines of|reminds me of|like|love|loved|liked|enjoyed|adore|"
    r"adored|fan of|fans of|big fan of|favorite is|favourite is|watched|seen"
)
_DISLIKE_CUES = (
    r"hated|hate|disliked|dislike|didn't like|did not like|don't like|can't stand|cannot stand|"
    r"couldn't stand|not a fan of|was bored by|bored by"
)
_SPAN_END = (
    r"(?=$|[,.;!?]|\s+but\s|\s+and\s+(?:i|not|no|nothing|something|anything|maybe)\b|\s+or\s)"
)
_WANTING = r"(?<!'d )(?<!’d )(?<!would )"
"""Not after "I'd" or "would": "I'd like a comedy" wants, it names no title."""
_MENTION = re.compile(
    rf"{_WANTING}(?P<cue>{_DISLIKE_CUES}|{_LIKE_CUES})\s+(?P<span>[^,.;!?]+?){_SPAN_END}",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,80})[\"“”«»]|(?<![\w])'([^']{2,80})'(?![\w])")
_WHY_ABOUT = re.compile(
    r"\b(?:why|explain|how come)\s+(?:did you (?:recommend|suggest|pick|choose)\s+|"
    r"(?:is|was)\s+|(?:recommend|suggest)\s+|not\s+)?(?P<span>[^,.;!?]+)",
    re.IGNORECASE,
)
_CONJUNCTION = re.compile(r"^\s*(?:and|&|or|plus|as well as|also)\s+", re.IGNORECASE)
MAX_FUZZY_TRIES = 3
_GENERIC_START = {
    "a",
    "an",
    "some",
    "something",
    "anything",
    "movies",
    "movie",
    "film",
    "films",
    "it",
    "that",
    "this",
    "them",
    "these",
    "those",
    "to",
    "more",
    "one",
    "ones",
    "the first",
    "what",
    "when",
    "how",
    "stuff",
    "things",
    "watching",
    "watch",
    "which",
    "i",
    "you",
    "me",
    "my",
    "your",
    "very",
    "much",
    "really",
    "so",
    "too",
    "all",
    "any",
}
_ORDINALS = {
    "first": 0,
    "1st": 0,
    "second": 1,
    "2nd": 1,
    "third": 2,
    "3rd": 2,
    "fourth": 3,
    "4th": 3,
    "fifth": 4,
    "5th": 4,
    "sixth": 5,
    "6th": 5,
    "seventh": 6,
    "7th": 6,
    "eighth": 7,
    "8th": 7,
    "ninth": 8,
    "9th": 8,
    "tenth": 9,
    "10th": 9,
    "last": -1,
    "top": 0,
}
_NUMBER_WORDS = {
    "one": 0,
    "two": 1,
    "three": 2,
    "four": 3,
    "five": 4,
    "six": 5,
    "seven": 6,
    "eight": 7,
    "nine": 8,
    "ten": 9,
}
_REFERENCE = re.compile(
    r"\b(?:the\s+)?(?P<ord>first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|sixth|6th|"
    r"seventh|7th|eighth|8th|ninth|9th|tenth|10th|last|top(?=\s+(?:one|pick)))"
    r"(?:\s+(?:one|movie|film|item|pick))?\b"
    r"|(?:#|number\s+|no\.\s*)(?P<num>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\b",
    re.IGNORECASE,
)
_INTENT_PATTERNS: list[tuple[Intent, re.Pattern[str]]] = [
    (
        Intent.RESTART,
        re.compile(
            r"\b(start (?:over|again|fresh)|restart|reset|forget (?:it|everything|all)|"
            r"new search|from scratch|clear (?:everything|all))\b"
        ),
    ),
    (
        Intent.WHY,
        re.compile(r"\b(why|how come|what makes|explain|reason|what's so good|whats so good)\b"),
    ),
    (
        Intent.REJECT_ALL,
        re.compile(
            r"\b(none of (?:these|them|those|this)|not these|something else|anything else|"
            r"show me (?:something |some )?(?:else|other|different)|different ones|other ones|"
            r"don't like any|dont like any|all (?:bad|boring)|nothing here|seen (?:them )?all|"
            r"neither)\b"
        ),
    ),
    (
        Intent.MORE_LIKE,
        re.compile(
            r"\b(more like (?:the|that|this|it|those|#|number)|more of (?:that|those|these|the)|"
            r"similar to (?:the|that|this|it|#|number)|like (?:the|that) (?:one|first|second|"
            r"third|last|\d)|like that one|like #)"
        ),
    ),
    (
        Intent.REJECT,
        re.compile(
            r"\b(not (?:that|this|the) (?:one|first|second|third|fourth|fifth|last|movie|film)|"
            r"not (?:#|number)\s*\w+|no thanks|not interested|(?:already )?seen (?:it|that|this)|"
            r"skip (?:it|that|this|the)|remove|drop (?:it|that|the)|not for me|"
            r"(?:don't|dont) (?:like|want) (?:that|this|the|it|#)|(?:that|this) one is bad)"
        ),
    ),
    (
        Intent.ACCEPT,
        re.compile(
            r"\b(i'll (?:watch|take|try|go with)|i will (?:watch|take|go with)|"
            r"sounds (?:good|great)|"
            r"perfect|that'?s (?:it|great|perfect)|great,? thanks|thank you|thanks|i'll check|"
            r"let's go with|lets go with|i'?m sold|exactly what i want|love (?:it|that one))\b"
        ),
    ),
]
_YES = re.compile(
    r"^\s*(yes|yeah|yep|yup|sure|ok|okay|of course|definitely|absolutely|please|"
    r"why not|i do|that would be nice|sounds good|correct|right)\b"
)
_NO = re.compile(r"^\s*(no|nope|nah|not really|not at all|i don'?t|don'?t care|never)\b")
_YES_LAST = re.compile(r"(yes|yeah|yep|yup|sure|ok|okay|of course|definitely|absolutely|correct)\b")
_NO_LAST = re.compile(r"(no|nope|nah|not really|not at all)\b")
"""An answer said last, in clauses of its own ("none of these, yeah sure", "..., no
thanks"): under a list that carries a question, people reject the list and answer in
either order. Stricter than the opening forms: "..., please" is no answer."""


def _answer(lowered: str, yes: bool) -> tuple[int, int] | None:
    """Where a yes (or a no) answer stands: at the start, or as the message's last clauses
    when nothing but words around an answer follows it."""
    found = (_YES if yes else _NO).match(lowered)
    if found:
        return found.span()
    last = _YES_LAST if yes else _NO_LAST
    for boundary in re.finditer(r"[,.;:!]\s*", lowered):
        head = last.match(lowered, boundary.end())
        if head and _ANSWER_WORDS.issuperset(re.findall(r"[a-z']+", lowered[head.end() :])):
            return boundary.start(), len(lowered)
    return None


_RECOMMEND_WORDS = re.compile(
    r"\b(recommend|suggest|suggestion|want|looking for|look for|show me|give me|find|"
    r"in the mood|feel like|what should i watch|any ideas|something|anything|movie|film|"
    r"watch|more)\b"
)
_YEAR = r"(1[89]\d\d|20\d\d)"
_DECADE = re.compile(r"\b(?:the\s+)?(?:(1[89]|20)(\d)0'?s|'?(\d)0'?s)\b")
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|-|until|till)\s+{_YEAR}\b")
_AFTER = re.compile(
    rf"\b(after|since|newer than|later than)\s+{_YEAR}\b"
    rf"|\b(from)\s+{_YEAR}\s+(?:on|onwards?|and later|forward)\b"
)
_BEFORE = re.compile(rf"\b(before|older than|earlier than|until|prior to)\s+{_YEAR}\b")
_IN_YEAR = re.compile(rf"\b(?:in|of|year|from|made in)\s+{_YEAR}\b")
_RECENT = re.compile(r"\b(recent|new|newer|latest|modern|current)\b")
_OLD = re.compile(r"\b(old|older|vintage|golden age|old-school|old school)\b")
_WORD = re.compile(r"[\w'-]+")
_PERIOD = re.compile(r"\d{3,4}s?|\d{3,4}\s*[-–]\s*\d{3,4}")
_CRITIQUE_PHRASES = set(CRITIQUE_WORDS)
_CRITIQUE = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(p) for p in sorted(CRITIQUE_WORDS, key=len, reverse=True))
    + r")(?![\w-])"
)
_MORE_LESS = re.compile(r"(?<![\w-])(more|less|not as|not so)\s+([a-z][a-z-]{2,})(?![\w-])")
_NOT_A_CRITIQUE = set(
    "like of than from with please ones one options choices ideas picks results titles "
    "suggestions recommendations similar stuff things the that this these those such "
    "about or and but".split()
)
_QUALITY = re.compile(
    r"(?<![\w-])("
    + "|".join(re.escape(p) for p in sorted(QUALITY_WORDS, key=len, reverse=True))
    + r")(?![\w-])"
)
_OR_GAP = re.compile(
    r"^[\s,.;]*(?:(?:either|or|maybe|perhaps|else|a|an|some|something|film|movie|one)\b[\s,.;]*)*$"
)
_NAME_AFTER = re.compile(
    r"\s*((?:[A-Z][\w.'-]*|de|van|von|del|la)(?:\s+(?:[A-Z][\w.'-]*|de|van|von|del|la))*)"
)
_RUNTIME_SPAN = re.compile(
    r"(?:(?:under|over|less than|more than|about|around|at most|at least|max|maximum)\s+)?"
    r"(?:\d+(?:\.\d+)?|one|two|three|an?)\s*(?:-\s*)?(?:minutes?|mins?|hours?|hrs?)\b"
)
_STOP = set(
    "i me my we you your a an the and or but to of in on for with at by from is are was were "
    "be been it its this that these those some something anything any please want wanna would "
    "like love looking look show give find need get let lets let's can could should maybe just "
    "really very quite more most less much movie movies film films one ones watch watching "
    "recommend suggest tonight today now again also too so than then there here what which "
    "who how do does did have has had am im i'm i'd id thing things kind sort bit lot little "
    "good great nice cool okay ok yes no not nothing without don't dont feel mood got get work "
    "works ideas idea about else sure type types kind kinds tell wondering wonder "
    "help guess maybe suggestions suggestion recommendations".split()
)
_DISCOURSE = set(
    "yeah yep yup nope nah absolutely definitely totally actually sorry honestly hmm hm "
    "well anyway alright fine indeed sounds right correct".split()
)
"""Words around an answer ("yep, that sounds right", "honestly, something else"): a
clause made of nothing else is the reply's tone, never a wish ("well made" still is)."""
_ANSWER_WORDS = _DISCOURSE | set(
    "yes sure ok okay please thanks thank you that that's it is sounds good great fine "
    "of course no not really at all".split()
)
"""What may follow an answer said last ("yeah sure", "yep, that sounds right", "no thanks")."""


def unique_mentions(mentions: list[ItemMention]) -> list[ItemMention]:
    """One mention per item; a dislike wins over a like of the same item in one message."""
    by_item: dict[int, ItemMention] = {}
    for mention in mentions:
        kept = by_item.get(mention.position)
        if kept is None or (kept.liked and not mention.liked):
            by_item[mention.position] = mention
    return list(by_item.values())


def _normalize(text: str) -> str:
    return " ".join(text.replace("’", "'").replace("‘", "'").split())


class Understander:
    """Turns messages into `Understanding`s against one catalog."""

    def __init__(
        self,
        catalog: Catalog,
        popularity: np.ndarray | None = None,
        extra_synonyms: dict[tuple[str, str], tuple[str, ...]] | None = None,
        lexicon: Lexicon | None = None,
    ) -> None:
        """`lexicon`: everyday words for this catalog's values (see `load_lexicon`);
        `extra_synonyms`: words for values the caller derived from this catalog (the
        leaf of a path, see `AttributeSpace.synonyms`), taken as they are."""
        self.catalog = catalog
        self.popularity = popularity
        self._phrases = self._build_phrases((lexicon or Lexicon()).synonyms, extra_synonyms or {})
        self._field_words = {name.lower() for name in catalog.fields}
        """Field names ("tag", "categories") name what a value is, not a wish."""
        self._phrase_pattern = (
            re.compile(
                r"(?<![\w-])("
                + "|".join(re.escape(p) for p in sorted(self._phrases, key=len, reverse=True))
                + r")(?![\w-])"
            )
            if self._phrases
            else None
        )
        self._single_words = {
            w
            for w in [*self._phrases, *CRITIQUE_WORDS, *QUALITY_WORDS]
            if re.fullmatch(r"[a-z]+", w)
        }
        self._single_word_list = sorted(self._single_words)
        titles = catalog.title_index  # the catalog's one title index, shared
        self._keys_no_year = titles.by_key_no_year
        self._title_keys = titles.keys
        self._no_year_list = titles.no_year_keys
        self._no_year_owners = titles.no_year_owners
        years = catalog.years[~np.isnan(catalog.years)]
        self._newest_year = int(years.max()) if len(years) else None
        # "recent" and "old" are relative to what the catalog holds: its newest and
        # oldest fifth by release year
        self._recent_from = int(np.quantile(years, 1 - AGE_SHARE)) if len(years) else None
        self._old_until = int(np.quantile(years, AGE_SHARE)) if len(years) else None
        fields = {f.lower() for f in catalog.fields}
        self._missing_facets = {
            facet: cues
            for facet, cues in FACET_WORDS.items()
            if not ({facet, f"{facet}s", *FACET_FIELDS.get(facet, ())} & fields)
        }
        self._facet_pattern = (
            re.compile(
                r"(?<![\w-])("
                + "|".join(
                    re.escape(c)
                    for c in sorted(
                        (c for cues in self._missing_facets.values() for c in cues),
                        key=len,
                        reverse=True,
                    )
                )
                + r")(?![\w-])"
            )
            if self._missing_facets
            else None
        )
        self._facet_of_cue = {c: f for f, cues in self._missing_facets.items() for c in cues}

    # ----- vocabulary ----------------------------------------------------------------
    def _build_phrases(
        self,
        lexicon: dict[tuple[str, str], tuple[str, ...]],
        extra: dict[tuple[str, str], tuple[str, ...]],
    ) -> dict[str, list[tuple[str, str]]]:
        """Lower-case phrase → [(field, value)], from catalog values and synonyms."""
        phrases: dict[str, list[tuple[str, str]]] = {}

        def add(phrase: str, field_name: str, value: str) -> None:
            phrase = phrase.lower().strip()
            if len(phrase) < 3 or phrase.isdigit() or phrase in _STOP:
                return
            entry = phrases.setdefault(phrase, [])
            if (field_name, value) not in entry:
                entry.append((field_name, value))

        values_of = {name: self.catalog.value_counts(name) for name in self.catalog.fields}
        for field_name, counts in values_of.items():
            if counts and all(_PERIOD.fullmatch(v) for v in counts):
                continue  # periods ("1990s") are read as year ranges
            for value in counts:
                add(value, field_name, value)
        for (field_name, value), words in extra.items():
            for word in words:
                add(word, field_name, value)
        for (field_name, value), words in lexicon.items():
            if field_name not in self.catalog.attributes:
                continue
            known = {v.lower(): v for v in self.catalog.value_counts(field_name)}
            if value.lower() not in known:
                continue  # a synonym counts only for a value this catalog has
            for word in words:
                word = word.lower().strip()
                if len(word) >= 3 and word not in _STOP:
                    # a synonym names its value only, even where another field has the word
                    phrases[word] = [(field_name, known[value.lower()])]
        for phrase in list(phrases):
            if phrase in _CRITIQUE_PHRASES or phrase in QUALITY_WORDS:
                del phrases[phrase]  # "classic", "dark": read as a ranking or a critique
        return phrases

    # ----- entry point -----------------------------------------------------------------
    def understand(self, message: str, shown: list[int] | None = None) -> Understanding:
        result = Understanding()
        text = _normalize(message)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS]
            result.notes.append(f"message cut to its first {MAX_MESSAGE_CHARS} characters")
        text = self._correct_typos(text, result)
        lowered = text.lower()
        self._message = text
        remaining = self._find_mentions(text, result)
        remaining, arguments = self._find_missing_facets(remaining, result)
        remaining = self._find_critiques(remaining, result, bool(shown))
        remaining = self._find_superlative(remaining, result)
        remaining = self._find_years(remaining, result)
        remaining = self._find_attributes(remaining, result)
        for start, end in arguments:  # a name the catalog cannot search must not be a wish
            remaining = remaining[:start] + " " * (end - start) + remaining[end:]
        self._find_intents(lowered, remaining, result, shown or [])
        if result.answer is not None:  # "not at all" leaves no "all" to wish for
            answer = _answer(lowered, result.answer)
            if answer:
                start, end = answer
                remaining = remaining[:start] + " " * (end - start) + remaining[end:]
        for _, pattern in _INTENT_PATTERNS:
            remaining = pattern.sub(lambda m: " " * len(m.group(0)), remaining)
        self._find_soft_wishes(remaining, result)
        self._find_contradictions(result)
        result.mentions = unique_mentions(result.mentions)
        result.uncertain = [
            m
            for m in unique_mentions(result.uncertain)
            if m.position not in {k.position for k in result.mentions}
        ]
        return result

    # ----- typos ------------------------------------------------------------------------
    @staticmethod
    def _is_uncommon(word: str) -> bool:
        words = common_words()
        return bool(words) and word.lower() not in words

    def _correct_typos(self, text: str, result: Understanding) -> str:
        """Words that are neither English nor catalog vocabulary, one edit away from a
        single-word phrase ("horor" → "horror", "underated" → "underrated")."""
        if not common_words():
            return text

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            lowered = word.lower()
            if (
                len(lowered) < TYPO_MIN_CHARS - 1
                or lowered in self._single_words
                or not self._is_uncommon(lowered)
                or word[:1].isupper()  # a name, perhaps a title: the title matcher reads it
            ):
                return word
            if len(lowered) < TYPO_MIN_CHARS:
                found = self._dropped_letter(lowered)
            else:
                best = process.extractOne(
                    lowered, self._single_word_list, scorer=Levenshtein.distance, score_cutoff=1
                )
                found = best[0] if best else None
            if found is None:
                return word
            result.notes.append(f"read '{word}' as '{found}'")
            return found

        return re.sub(r"[A-Za-z]+", fix, text)

    def _dropped_letter(self, word: str) -> str | None:
        """The one vocabulary word that `word` is with a letter left out, if exactly one."""
        found = {
            w
            for w in self._single_words
            if len(w) == len(word) + 1 and any(w[:i] + w[i + 1 :] == word for i in range(len(w)))
        }
        return found.pop() if len(found) == 1 else None

    # ----- titles -----------------------------------------------------------------------
    def _match_span(self, span: str) -> tuple[int, float, str] | None:
        """Best title for the longest prefix of `span` that names one.

        Exact keys are tried for every prefix (cheap dictionary look-ups); the fuzzy
        search, which scans the catalog, only for the few longest multi-word prefixes.
        """
        words = span.split()
        if not words or words[0].lower() in _GENERIC_START or _REFERENCE.match(span.lower()):
            return None
        best: tuple[int, float, str] | None = None
        fuzzy_tries = 0
        for length in range(min(len(words), MAX_TITLE_WORDS), 0, -1):
            candidate = " ".join(words[:length]).strip("'\"")
            key = title_key(candidate, keep_year=False)
            if not key or (length == 1 and len(key) < 3):
                continue
            exact = self._keys_no_year.get(key) or self._exact_with_year(candidate)
            if exact:
                return max(exact, key=self._popularity_of), 100.0, " ".join(words[:length])
            names_alone = length == 1 and self._is_uncommon(key) and len(key) >= 5
            if best is None and (length >= 2 or names_alone) and fuzzy_tries < MAX_FUZZY_TRIES:
                fuzzy_tries += 1
                best = self._fuzzy(candidate, " ".join(words[:length]))
        return best

    def _exact_with_year(self, candidate: str) -> list[int]:
        return self.catalog.title_index.exact_with_year(candidate)

    def _fuzzy(self, candidate: str, raw: str) -> tuple[int, float, str] | None:
        has_year = title_key(candidate) != title_key(candidate, keep_year=False)
        keys = self._title_keys if has_year else self._no_year_list
        scores = title_similarity(title_key(candidate, keep_year=has_year), keys)
        top = float(scores.max()) if len(scores) else 0.0
        if top < MAYBE_TITLE_SCORE:
            return None
        tied = np.flatnonzero(scores == top)
        owners = [[int(i)] for i in tied] if has_year else [self._no_year_owners[i] for i in tied]
        pick = max((p for group in owners for p in group), key=self._popularity_of)
        return int(pick), top, raw

    def _popularity_of(self, position: int) -> float:
        return float(self.popularity[position]) if self.popularity is not None else -position

    def _find_mentions(self, text: str, result: Understanding) -> str:
        """Find liked/disliked titles; return the lower-cased text with them blanked out."""
        spans: list[tuple[int, int]] = []
        for found in _QUOTED.finditer(text):
            group = 1 if found.group(1) else 2
            before = text[max(0, found.start() - 25) : found.start()]
            liked = not re.search(_DISLIKE_CUES, before, re.IGNORECASE)
            if self._mentions_in(found.group(group), found.start(group), liked, result, spans):
                spans.append(found.span())
        why = _WHY_ABOUT.search(text)
        if why and not _REFERENCE.match(why.group("span").lower()):
            matched = self._match_span(why.group("span").strip())
            if matched is not None and matched[1] >= SURE_TITLE_SCORE:
                result.subject = matched[0]
                start = why.start("span")
                spans.append((start, start + len(matched[2])))
        for found in _MENTION.finditer(text):
            if any(s <= found.start("span") < e for s, e in spans):
                continue
            liked = not re.fullmatch(_DISLIKE_CUES, found.group("cue"), re.IGNORECASE)
            raw = found.group("span")
            if self._mentions_in(raw, found.start("span"), liked, result, spans):
                spans.append((found.start("cue"), found.end("cue")))
            elif self._looks_like_title(raw):
                result.unknown_titles.append((raw.strip(), self.catalog.suggest_titles(raw)))
                spans.append(found.span())
        out = list(text.lower())
        for start, end in spans:
            out[start:end] = " " * (end - start)
        return "".join(out)

    def _mentions_in(
        self,
        raw: str,
        offset: int,
        liked: bool,
        result: Understanding,
        spans: list[tuple[int, int]],
    ) -> bool:
        """Read one or more titles joined by "and"/"or" from `raw`; True if any matched."""
        found_any = False
        position = 0
        while position < len(raw):
            rest = raw[position:]
            lead = len(rest) - len(rest.lstrip())
            conj = _CONJUNCTION.match(rest)
            if found_any and conj:
                lead = conj.end()
            matched = self._match_span(rest[lead:].strip())
            if matched is None:
                break
            pos, score, matched_text = matched
            mention = ItemMention(pos, self.catalog.titles[pos], liked, score, matched_text)
            (result.mentions if score >= SURE_TITLE_SCORE else result.uncertain).append(mention)
            start = offset + position + lead
            spans.append((start, start + len(matched_text)))
            position += lead + len(matched_text)
            found_any = True
            if not _CONJUNCTION.match(raw[position:]):
                break
        return found_any

    @staticmethod
    def _looks_like_title(raw: str) -> bool:
        words = raw.split()
        return (
            bool(words)
            and words[0].lower() not in _GENERIC_START
            and any(w[:1].isupper() for w in words[:3])
        )

    # ----- facets, critiques, superlatives ---------------------------------------------------
    def _find_missing_facets(
        self, text: str, result: Understanding
    ) -> tuple[str, list[tuple[int, int]]]:
        """Cues for facets this catalog has no field for ("directed by", "minutes").

        The cue is blanked; a name right after it ("directed by Christopher Nolan") stays
        in the text, so a catalog value of that name (a tag) can still be read, and its
        span is returned, to be blanked before soft wishes are read."""
        if self._facet_pattern is None:
            return text, []
        arguments: list[tuple[int, int]] = []
        original = text
        for found in list(_RUNTIME_SPAN.finditer(text)):
            if "runtime" in self._missing_facets:
                if "runtime" not in [f for f, _ in result.missing_facets]:
                    result.missing_facets.append(("runtime", found.group(0)))
                text = text[: found.start()] + " " * len(found.group(0)) + text[found.end() :]
        for found in list(self._facet_pattern.finditer(text)):
            cue = found.group(1)
            facet = self._facet_of_cue[cue]
            argument = ""
            name = _NAME_AFTER.match(self._original_case(original, found.end()))
            if name and facet in ("director", "actor", "studio"):
                argument = name.group(1)
                arguments.append((found.end(), found.end() + name.end()))
            if facet not in [f for f, _ in result.missing_facets]:
                result.missing_facets.append((facet, argument))
            text = text[: found.start()] + " " * len(cue) + text[found.end() :]
        return text, arguments

    def _original_case(self, lowered: str, start: int) -> str:
        """The message from `start` with its original capitals (names start with one)."""
        return self._message[start:] if len(self._message) == len(lowered) else ""

    def _find_critiques(self, text: str, result: Understanding, after_list: bool) -> str:
        """Comparatives that move the list: "older", "less violent", "more like X but darker".

        "older"/"newer" on a first turn, with no list to compare with, are read as year
        ranges instead (see `_find_years`)."""
        for found in list(_CRITIQUE.finditer(text)):
            phrase = found.group(1)
            kind, concept, sign = CRITIQUE_WORDS[phrase]
            if kind == "year" and not after_list:
                continue
            result.critiques.append(Critique(kind, sign, concept, phrase))
            text = text[: found.start()] + " " * len(phrase) + text[found.end() :]
        for found in list(_MORE_LESS.finditer(text)):
            word = found.group(2)
            if word in _NOT_A_CRITIQUE or word in _STOP:
                continue
            sign = 1 if found.group(1) == "more" else -1
            result.critiques.append(Critique("concept", sign, word, found.group(0)))
            text = text[: found.start()] + " " * len(found.group(0)) + text[found.end() :]
        return text

    @staticmethod
    def _find_superlative(text: str, result: Understanding) -> str:
        for found in list(_QUALITY.finditer(text)):
            word = found.group(1)
            if word == "top" and re.match(r"\s+(?:one|pick)\b", text[found.end() :]):
                continue  # "the top one" points at an item
            kind = QUALITY_WORDS[word]
            if result.superlative is None or kind != "quality":
                result.superlative = kind  # "best hidden gems" is about hidden gems
            text = text[: found.start()] + " " * len(word) + text[found.end() :]
        return text

    # ----- years --------------------------------------------------------------------------
    def _find_years(self, text: str, result: Understanding) -> str:
        def negated(start: int) -> bool:
            return self._is_negated(text, start)

        def blank(match: re.Match[str]) -> None:
            nonlocal text
            s, e = match.span()
            text = text[:s] + " " * (e - s) + text[e:]

        for found in list(_BETWEEN.finditer(text)):
            low, high = sorted((int(found.group(1)), int(found.group(2))))
            self._add_years(result, low, high, negated(found.start()))
            blank(found)
        for found in list(_AFTER.finditer(text)):
            year = int(found.group(2) or found.group(4))
            low = year + 1 if found.group(1) in ("after", "newer than", "later than") else year
            self._add_years(result, low, None, negated(found.start()))
            blank(found)
        for found in list(_BEFORE.finditer(text)):
            year = int(found.group(2))
            high = year if found.group(1) == "until" else year - 1
            self._add_years(result, None, high, negated(found.start()))
            blank(found)
        points: list[tuple[int, int]] = []
        """Decades and single years: several of them mean any of them ("80s or 90s")."""

        def point(low: int, high: int, start: int) -> None:
            if negated(start):
                self._add_years(result, low, high, True)
            else:
                points.append((low, high))

        for found in list(_DECADE.finditer(text)):
            if found.group(1):
                start = int(found.group(1) + found.group(2) + "0")
            else:
                digit = int(found.group(3))
                start = (1900 if digit >= 2 else 2000) + digit * 10
            point(start, start + 9, found.start())
            blank(found)
        lowered_words = text
        for word, start in DECADE_WORDS.items():
            for found in list(re.finditer(rf"\b{word}\b", lowered_words)):
                if word == "tens" and not re.search(r"twenty|20", text[: found.start()][-12:]):
                    continue
                point(start, start + 9, found.start())
                blank(found)
        for found in list(_IN_YEAR.finditer(text)):
            year = int(found.group(1))
            point(year, year, found.start())
            blank(found)
        self._add_year_points(result, points)
        if self._recent_from is not None:
            for found in list(_RECENT.finditer(text)):
                if not negated(found.start()):
                    self._add_years(result, self._recent_from, None, False)
                blank(found)
            for found in list(_OLD.finditer(text)):
                if not negated(found.start()):
                    self._add_years(result, None, self._old_until, False)
                blank(found)
        return text

    @classmethod
    def _add_year_points(cls, result: Understanding, points: list[tuple[int, int]]) -> None:
        """The union of the named decades/years: their span, minus the gaps between them."""
        if not points:
            return
        points = sorted(set(points))
        cls._add_years(result, points[0][0], max(high for _, high in points), False)
        reach = points[0][1]
        for low, high in points[1:]:
            if low > reach + 1:
                result.excluded_years.append((reach + 1, low - 1))
            reach = max(reach, high)

    @staticmethod
    def _add_years(result: Understanding, low: int | None, high: int | None, negated: bool) -> None:
        if negated:
            result.excluded_years.append((low or 0, high or 9999))
            return
        if low is not None:
            result.year_min = low if result.year_min is None else max(result.year_min, low)
        if high is not None:
            result.year_max = high if result.year_max is None else min(result.year_max, high)

    # ----- attributes -----------------------------------------------------------------
    def _is_negated(self, text: str, start: int) -> bool:
        """A negation cue within a few words before `start`, in the same clause."""
        clause_start = max(text.rfind(ch, 0, start) for ch in ",.;!?")
        but = text.rfind(" but ", 0, start)
        if but >= 0 and re.search(r"\b(?:anything|everything|all)\s*$", text[:but].lower()):
            return True  # "anything but horror": the "but" is the negation, not a new clause
        clause = text[max(clause_start, but) + 1 : start].lower()
        words = clause.split()[-NEGATION_WINDOW:]
        window = " ".join(words)
        return any(
            re.search(rf"(?<![\w']){re.escape(cue)}(?![\w'])", window) for cue in NEGATION_CUES
        )

    @staticmethod
    def _is_softened(text: str, start: int, end: int) -> bool:
        """A softening word in the value's clause ("ideally", "if possible"): a preference
        that ranks items, not a condition that filters them."""
        stops = ",.;!?"
        clause_start = max(text.rfind(ch, 0, start) for ch in stops) + 1
        ends = [i for i in (text.find(ch, end) for ch in stops) if i >= 0]
        clause = text[clause_start : min(ends) if ends else len(text)].lower()
        return any(re.search(rf"(?<![\w']){re.escape(cue)}(?![\w'])", clause) for cue in SOFTENERS)

    def _find_attributes(self, text: str, result: Understanding) -> str:
        if self._phrase_pattern is None:
            return text
        spans = []
        chain: list[tuple[Constraint, ...]] = []
        chain_has_or = False
        previous_end = None
        for found in self._phrase_pattern.finditer(text):
            phrase = found.group(1)
            include = not self._is_negated(text, found.start())
            hard = not self._is_softened(text, found.start(), found.end())
            found_here = tuple(
                Constraint(field_name, value, include, hard, phrase)
                for field_name, value in self._phrases[phrase]
            )
            gap = text[previous_end : found.start()] if previous_end is not None else None
            if include and chain and gap is not None and _OR_GAP.match(gap):
                chain_has_or = chain_has_or or bool(re.search(r"\bor\b", gap))
            else:
                self._close_chain(result, chain, chain_has_or)
                chain, chain_has_or = [], False
            if include:
                chain.append(found_here)
            for constraint in found_here:
                if constraint not in result.constraints:
                    result.constraints.append(constraint)
            spans.append(found.span())
            previous_end = found.end()
        self._close_chain(result, chain, chain_has_or)
        for start, end in spans:
            text = text[:start] + " " * (end - start) + text[end:]
        return text

    @staticmethod
    def _close_chain(
        result: Understanding, chain: list[tuple[Constraint, ...]], has_or: bool
    ) -> None:
        """Values joined by "or" become one group of alternatives ("crime or noir")."""
        if not has_or or len(chain) < 2:
            return
        members = [c for found in chain for c in found]
        hard = [c for c in members if c.hard]
        if len(hard) < 2:
            return
        group = list(dict.fromkeys((c.field, c.value) for c in hard))
        if len(group) < 2:
            return
        result.constraints = [c for c in result.constraints if c not in hard]
        result.any_of.append(group)

    # ----- intents ------------------------------------------------------------------------
    def _find_intents(
        self, lowered: str, remaining: str, result: Understanding, shown: list[int]
    ) -> None:
        no_value = re.match(r"^\s*no\s+([\w-]+)", lowered)
        negates_a_value = bool(no_value) and any(
            not c.include and c.text.startswith(no_value.group(1)) for c in result.constraints
        )
        if _answer(lowered, yes=True):
            result.answer = True
        elif _answer(lowered, yes=False) and not negates_a_value:  # "no horror" is not a "no"
            result.answer = False
        for intent, pattern in _INTENT_PATTERNS:
            if pattern.search(lowered):
                result.intents.append(intent)
        if Intent.REJECT_ALL in result.intents and Intent.REJECT in result.intents:
            result.intents.remove(Intent.REJECT)
        if _YES.search(lowered) and not result.intents:
            result.intents.append(Intent.YES)
        elif result.answer is False and not (result.intents or result.mentions):
            result.intents.append(Intent.NO)
        reference = _REFERENCE.search(lowered)
        if reference:
            if reference.group("ord"):
                result.reference = _ORDINALS[reference.group("ord").lower()]
            else:
                num = reference.group("num").lower()
                result.reference = _NUMBER_WORDS.get(num, int(num) - 1 if num.isdigit() else 0)
        elif (
            shown
            and result.mentions
            and any(m.position in shown for m in result.mentions)
            and (
                Intent.WHY in result.intents
                or Intent.REJECT in result.intents
                or Intent.MORE_LIKE in result.intents
            )
        ):
            mentioned = next(m for m in result.mentions if m.position in shown)
            result.reference = shown.index(mentioned.position)
            result.mentions = [m for m in result.mentions if m is not mentioned]
        if result.reference is not None and not (
            {Intent.WHY, Intent.REJECT, Intent.MORE_LIKE, Intent.ACCEPT} & set(result.intents)
        ):
            if re.search(r"\b(not|no|don't|dont)\b", lowered):
                result.intents.append(Intent.REJECT)
            elif re.search(r"\b(more|similar|like)\b", lowered):
                result.intents.append(Intent.MORE_LIKE)
        wants = (
            result.mentions
            or result.constraints
            or result.any_of
            or result.critiques
            or result.superlative
            or result.year_min
            or result.year_max
            or result.excluded_years
            or _RECOMMEND_WORDS.search(remaining)
        )
        if wants and not (
            {
                Intent.WHY,
                Intent.REJECT,
                Intent.REJECT_ALL,
                Intent.ACCEPT,
                Intent.MORE_LIKE,
                Intent.RESTART,
            }
            & set(result.intents)
        ):
            result.intents.append(Intent.RECOMMEND)

    # ----- the rest -----------------------------------------------------------------------
    def _find_soft_wishes(self, remaining: str, result: Understanding) -> None:
        """Descriptive words no rule understood ("mind-bending", "feel-good")."""
        for clause in re.split(r"[,.;!?]|\bbut\b", remaining):
            words = [w for w in _WORD.findall(clause) if w not in _STOP and not w.isdigit()]
            words = [w for w in words if len(w) > 2 and not _REFERENCE.fullmatch(w)]
            intent_words = {
                "why",
                "explain",
                "reason",
                "thanks",
                "thank",
                "restart",
                "reset",
                "else",
                "different",
                "similar",
                "none",
                "another",
                "other",
            }
            words = [w for w in words if w not in intent_words and w not in self._field_words]
            if words and not _DISCOURSE.issuperset(words):
                positive = not self._is_negated(clause, clause.find(words[0]))
                result.soft_wishes.append((" ".join(words), positive))

    @staticmethod
    def _find_contradictions(result: Understanding) -> None:
        wanted = {(c.field, c.value) for c in result.constraints if c.include}
        unwanted = {(c.field, c.value) for c in result.constraints if not c.include}
        for field_name, value in sorted(wanted & unwanted):
            result.contradictions.append(f"{field_name}={value}")
        if result.year_min and result.year_max and result.year_min > result.year_max:
            result.contradictions.append(f"years {result.year_min}-{result.year_max}")
