"""Words people use, in two parts: plain English that fits any catalog, and per-catalog files.

The catalog's own values ("Sci-Fi", "1990s", "time travel") are the vocabulary. A catalog
may add everyday synonyms for its values with a lexicon file (TOML, see
`lexicons/movielens.toml`): shipped files apply to the datasets their `datasets` patterns
name, and any bundle may carry its own `lexicon.toml`. What stays in this module is
catalog-free English: negation, decade words, comparative critiques, quality words and
the facets people ask for that a catalog may not have.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from whyrec.errors import WhyrecError

LEXICON_DIR = Path(__file__).parent / "lexicons"
LEXICON_FILE = "lexicon.toml"
"""A bundle (or data folder) may hold a lexicon of this name: it adds to the shipped ones."""


@dataclass
class Lexicon:
    """Synonyms for catalog values: (field, value) → words."""

    synonyms: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def words_for(self, field_name: str, value: str) -> tuple[str, ...]:
        return self.synonyms.get((field_name, value), ())

    def merged(self, other: Lexicon) -> Lexicon:
        out = dict(self.synonyms)
        for key, words in other.synonyms.items():
            out[key] = tuple(dict.fromkeys(out.get(key, ()) + words))
        return Lexicon(out)


def read_lexicon(path: Path) -> tuple[list[str], Lexicon]:
    """One lexicon file: its dataset patterns and its synonyms."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise WhyrecError(f"cannot read lexicon {path}: {error}") from None
    synonyms: dict[tuple[str, str], tuple[str, ...]] = {}
    for field_name, values in data.get("synonyms", {}).items():
        if not isinstance(values, dict):
            raise WhyrecError(f"lexicon {path}: [synonyms.{field_name}] must map values to words")
        for value, words in values.items():
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise WhyrecError(f"lexicon {path}: {field_name}.{value} must be a list of words")
            synonyms[(field_name, value)] = tuple(words)
    return [str(p) for p in data.get("datasets", [])], Lexicon(synonyms)


def load_lexicon(dataset_name: str | None, extra: Path | None = None) -> Lexicon:
    """The shipped lexicons whose patterns match `dataset_name`, plus `extra` if it exists."""
    lexicon = Lexicon()
    for path in sorted(LEXICON_DIR.glob("*.toml")):
        patterns, found = read_lexicon(path)
        if dataset_name and any(fnmatch.fnmatch(dataset_name.lower(), p) for p in patterns):
            lexicon = lexicon.merged(found)
    if extra is not None and Path(extra).is_file():
        lexicon = lexicon.merged(read_lexicon(Path(extra))[1])
    return lexicon


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Whole English words of the shipped encoder's vocabulary (about 20,000).

    A word outside it ("horor", "shawshank", "se7en") is a typo or a name: only such
    words are corrected to a catalog phrase or read as naming a title on their own.
    Empty when the encoder is not installed (then nothing is corrected)."""
    from whyrec.errors import WhyrecError
    from whyrec.text.encoder import encoder_directory

    try:
        path = encoder_directory() / "vocab.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
    except (WhyrecError, OSError):
        return frozenset()
    return frozenset(w for w in lines if w.isalpha() and w.islower())


def _movielens_genres() -> dict[str, tuple[str, ...]]:
    """The MovieLens genre words, for callers that speak for MovieLens users (simulators)."""
    _, lexicon = read_lexicon(LEXICON_DIR / "movielens.toml")
    return {value: words for (name, value), words in lexicon.synonyms.items() if name == "genres"}


GENRE_SYNONYMS: dict[str, tuple[str, ...]] = _movielens_genres()
"""Kept for the simulated users and the LLM guard, which phrase MovieLens genres; the
understanding itself reads synonyms through `load_lexicon`."""

DECADE_WORDS: dict[str, int] = {
    "twenties": 1920,
    "thirties": 1930,
    "forties": 1940,
    "fifties": 1950,
    "sixties": 1960,
    "seventies": 1970,
    "eighties": 1980,
    "nineties": 1990,
    "noughties": 2000,
    "two thousands": 2000,
    "twenty tens": 2010,
    "tens": 2010,
}

NEGATION_CUES = (
    "not",
    "no",
    "nothing",
    "without",
    "don't",
    "dont",
    "do not",
    "never",
    "avoid",
    "except",
    "isn't",
    "isnt",
    "hate",
    "hates",
    "dislike",
    "none",
    "nor",
    "skip",
    "anything but",
    "no more",
    "rather not",
    "can't stand",
    "cant stand",
    "not too",
    "too much",
)

SOFTENERS = (
    "ideally",
    "if possible",
    "preferably",
    "would be nice",
    "nice to have",
    "bonus",
    "maybe",
    "perhaps",
    "rather",
    "prefer",
    "i'd prefer",
    "if you can",
)
"""Words that make a wanted value a preference rather than a condition."""

# ----- critiques ------------------------------------------------------------------------
# A critique moves the list along a direction measured on the catalog: the release year,
# the popularity, the quality (a shrunk mean rating), or a concept whose closeness to each
# item is measured by the sentence encoder on item text and attribute values. These are
# words of English, not of any catalog: which items are "darker" is decided by the data.
CRITIQUE_WORDS: dict[str, tuple[str, str, int]] = {
    # phrase: (kind, concept, sign)
    "lighter": ("concept", "light-hearted feel-good fun", 1),
    "more light-hearted": ("concept", "light-hearted feel-good fun", 1),
    "more lighthearted": ("concept", "light-hearted feel-good fun", 1),
    "less dark": ("concept", "dark", -1),
    "happier": ("concept", "light-hearted feel-good fun", 1),
    "more cheerful": ("concept", "light-hearted feel-good fun", 1),
    "more upbeat": ("concept", "light-hearted feel-good fun", 1),
    "less heavy": ("concept", "dark", -1),
    "less depressing": ("concept", "depressing sad", -1),
    "darker": ("concept", "dark", 1),
    "more dark": ("concept", "dark", 1),
    "grittier": ("concept", "dark gritty", 1),
    "heavier": ("concept", "dark", 1),
    "less violent": ("concept", "violence", -1),
    "less violence": ("concept", "violence", -1),
    "less bloody": ("concept", "violence", -1),
    "less gory": ("concept", "violence", -1),
    "gentler": ("concept", "violence", -1),
    "more violent": ("concept", "violence", 1),
    "more violence": ("concept", "violence", 1),
    "funnier": ("concept", "funny comedy", 1),
    "more funny": ("concept", "funny comedy", 1),
    "more humor": ("concept", "funny comedy", 1),
    "more humour": ("concept", "funny comedy", 1),
    "more comedy": ("concept", "funny comedy", 1),
    "less funny": ("concept", "funny comedy", -1),
    "more serious": ("concept", "serious drama", 1),
    "less serious": ("concept", "serious drama", -1),
    "scarier": ("concept", "scary horror", 1),
    "more scary": ("concept", "scary horror", 1),
    "creepier": ("concept", "scary horror", 1),
    "less scary": ("concept", "scary horror", -1),
    "less creepy": ("concept", "scary horror", -1),
    "more romantic": ("concept", "romantic love story", 1),
    "less romantic": ("concept", "romantic love story", -1),
    "less romance": ("concept", "romantic love story", -1),
    "more romance": ("concept", "romantic love story", 1),
    "smarter": ("concept", "thought-provoking intelligent", 1),
    "more thought-provoking": ("concept", "thought-provoking intelligent", 1),
    "sadder": ("concept", "depressing sad", 1),
    "more exciting": ("concept", "exciting action-packed", 1),
    "more action": ("concept", "exciting action-packed", 1),
    "less action": ("concept", "exciting action-packed", -1),
    "calmer": ("concept", "exciting action-packed", -1),
    "weirder": ("concept", "surreal weird", 1),
    "stranger": ("concept", "surreal weird", 1),
    "more family-friendly": ("concept", "family kids children", 1),
    "more kid-friendly": ("concept", "family kids children", 1),
    "more recent": ("year", "", 1),
    "newer": ("year", "", 1),
    "more modern": ("year", "", 1),
    "later": ("year", "", 1),
    "older": ("year", "", -1),
    "earlier": ("year", "", -1),
    "less recent": ("year", "", -1),
    "less known": ("popularity", "", -1),
    "lesser known": ("popularity", "", -1),
    "lesser-known": ("popularity", "", -1),
    "less well known": ("popularity", "", -1),
    "less popular": ("popularity", "", -1),
    "less mainstream": ("popularity", "", -1),
    "more obscure": ("popularity", "", -1),
    "less famous": ("popularity", "", -1),
    "more popular": ("popularity", "", 1),
    "more famous": ("popularity", "", 1),
    "better known": ("popularity", "", 1),
    "more well known": ("popularity", "", 1),
    "more mainstream": ("popularity", "", 1),
    "better": ("quality", "", 1),
    "higher rated": ("quality", "", 1),
    "better rated": ("quality", "", 1),
}
"""Comparatives and their direction. Any other "more X" / "less X" is a concept critique
on X itself, so the list covers the common cases and the pattern covers the rest."""

QUALITY_WORDS: dict[str, str] = {
    "best": "quality",
    "top": "quality",
    "top-rated": "quality",
    "top rated": "quality",
    "highest rated": "quality",
    "highest-rated": "quality",
    "greatest": "quality",
    "finest": "quality",
    "masterpiece": "quality",
    "masterpieces": "quality",
    "must-see": "quality",
    "must see": "quality",
    "acclaimed": "quality",
    "critically acclaimed": "quality",
    "classic": "classic",
    "classics": "classic",
    "all-time": "quality",
    "underrated": "underrated",
    "under-rated": "underrated",
    "hidden gem": "underrated",
    "hidden gems": "underrated",
    "overlooked": "underrated",
    "under the radar": "underrated",
    "little-known": "underrated",
    "little known": "underrated",
    "most popular": "popular",
    "popular": "popular",
    "blockbuster": "popular",
    "blockbusters": "popular",
    "crowd-pleaser": "popular",
    "crowd pleaser": "popular",
    "well-known": "popular",
    "famous": "popular",
}
"""Superlatives: rank within the constraints by a measure taken from the data."""

FACET_WORDS: dict[str, tuple[str, ...]] = {
    # facet: cues. Field names that count as having the facet are the facet, its plural
    # and FACET_FIELDS below.
    "director": ("directed by", "director", "directors", "filmmaker", "by director"),
    "actor": ("starring", "actor", "actors", "actress", "actresses", "featuring", "with actor"),
    "runtime": (
        "runtime",
        "run time",
        "minutes",
        "minute",
        "hours long",
        "hour long",
        "under two hours",
        "under 2 hours",
        "length",
        "short",
        "shorter",
        "longer",
        "long",
        "quick watch",
    ),
    "language": (
        "language",
        "subtitles",
        "subtitled",
        "dubbed",
        "in english",
        "in french",
        "in spanish",
        "in german",
        "in japanese",
        "in korean",
        "foreign language",
    ),
    "studio": ("studio", "studios", "produced by", "production company", "made by"),
    "price": ("price", "cheap", "costs", "cost", "for free", "to rent", "to buy", "dollars"),
    "streaming service": ("netflix", "on hulu", "prime video", "disney+", "streaming", "hbo"),
    "age rating": ("pg-13", "rated r", "r-rated", "rated pg", "age rating", "mpaa", "certificate"),
    "awards": ("oscar", "oscars", "academy award", "award-winning", "award winning"),
    "box office": ("box office", "budget", "grossing"),
}
"""Facets people ask for that many catalogs do not have."""

FACET_FIELDS: dict[str, tuple[str, ...]] = {
    "director": ("director", "directors", "directed_by"),
    "actor": ("actor", "actors", "cast", "starring", "stars"),
    "runtime": ("runtime", "duration", "length", "minutes"),
    "language": ("language", "languages", "original_language"),
    "studio": ("studio", "studios", "company", "production"),
    "price": ("price", "cost"),
    "streaming service": ("provider", "providers", "streaming", "service"),
    "age rating": ("age_rating", "certificate", "mpaa", "rating_label"),
    "awards": ("awards", "award"),
    "box office": ("box_office", "budget", "revenue", "gross"),
}
"""Attribute fields that carry a facet, when a catalog has them."""
