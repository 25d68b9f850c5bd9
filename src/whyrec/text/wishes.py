"""Free text matched against the catalog: conversation wishes and `--query` requests.

A text is compared with two things: the attribute values of the catalog (so
"mind-bending" can find the tag "thought-provoking") and the text of every item (title,
every attribute field, description). In conversation a title never matches a wish by
sharing a word with it: where an item's title shares a content word with the wish, the
item is compared through its text *without* the title, so "a romantic comedy for date
night" does not find the film called Date Night (a title counts only when the user names
it, which the understanding reads as a mention). A whole `--query` is a description,
and an item's title is part of its own description there. When the bundle's model reads
text itself (the AlphaRec-style text model), its own `score_query` is averaged in.

A text that resembles nothing closely enough (leftover words such as "ideas") adds
nothing rather than noise. Everything is encoded lazily, on the first text, and item
vectors are cached on disk by the encoder, so a conversation without wishes never pays
for the encoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog, title_key

VALUE_MATCH = 0.5
"""Cosine above which a wish is taken to name an attribute value ("mind-bending" →
"mindfuck" 0.50, "dark and gritty" → "gritty" 0.80; "ideas" → "movies" only 0.46)."""
ITEM_MATCH = 0.3
"""A wish whose best item-text cosine stays below this is ignored as too vague
("mind-bending" reaches 0.34 on ml-latest-small, leftover words like "tonight" 0.28)."""
VALUE_BOOST = 5.0
"""Boost, in standard deviations of the text similarity, for items with a matched value."""
MAX_FIELD_VALUES = 20_000
"""Fields with more distinct values than this (ids, free text) are not matched as values."""
_WORD = re.compile(r"[a-z0-9]+")
STEM_CHARS = 5
_FILLER = set(
    "a an the and or of in on for to with by at from is it its this that some something "
    "movie movies film films".split()
)

QueryModel = Callable[[str], np.ndarray]
"""A model's own free-text scorer (`score_query`), one score per catalog item."""


def encoder_available() -> bool:
    """Whether the shipped encoder can be loaded (its package is installed)."""
    from whyrec.errors import WhyrecError
    from whyrec.text.encoder import encoder_directory

    try:
        encoder_directory()
    except WhyrecError:
        return False
    return True


def _stem(word: str) -> str:
    """A crude fold of word forms: a plural "s" off, then the first five letters, so
    "toys" meets "Toy" and "light" meets "Lightness"."""
    word = word[:-1] if len(word) > 3 and word.endswith("s") else word
    return word[:STEM_CHARS]


def content_words(text: str) -> set[str]:
    """Stemmed words other than fillers; two letters count ("Up" is a title and a word)."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _FILLER}


def _zscore(values: np.ndarray) -> np.ndarray:
    spread = float(values.std()) or 1.0
    return (values - values.mean()) / spread


class SemanticWishes:
    """A `WishScorer`: wishes → one score per catalog item (None when nothing matched)."""

    def __init__(
        self,
        catalog: Catalog,
        query_model: QueryModel | None = None,
        title_guard: bool = True,
        min_match: float = ITEM_MATCH,
    ) -> None:
        """`title_guard`: compare items whose title shares a word with the text through
        their text without the title (conversation wishes, which are what is left of a
        message once named titles are cut out). A whole `--query` is a description of
        the item wanted, and a title is part of an item's description, so there it is
        off. `min_match`: best item cosine under which a text is ignored as vague."""
        self.catalog = catalog
        self.query_model = query_model
        self.title_guard = title_guard
        self.min_match = min_match
        self.last_matches: list[tuple[str, str, str, float]] = []
        """(wish, field, value, cosine) of the values the last call matched, for the trace."""
        self._queries: dict[str, np.ndarray] = {}
        self._last: tuple[tuple[tuple[str, bool], ...], np.ndarray | None] | None = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Wish vectors, each text encoded once: wishes stay in the state for many turns."""
        from whyrec.text.encoder import encode_texts

        missing = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if missing:
            vectors = encode_texts(missing, description="encoding wishes")
            self._queries.update(zip(missing, vectors, strict=True))
        return np.stack([self._queries[t] for t in texts])

    @cached_property
    def item_vectors(self) -> np.ndarray:
        from whyrec.text.encoder import encode_items

        return encode_items(self.catalog)

    @cached_property
    def untitled_vectors(self) -> np.ndarray:
        from whyrec.text.encoder import encode_items

        return encode_items(self.catalog, with_titles=False)

    @cached_property
    def _title_words(self) -> dict[str, np.ndarray]:
        """Content word → positions of the items whose title holds it."""
        index: dict[str, list[int]] = {}
        for position, title in enumerate(self.catalog.titles):
            for word in content_words(title_key(title, keep_year=False)):
                index.setdefault(word, []).append(position)
        return {w: np.asarray(p, dtype=np.int64) for w, p in index.items()}

    def sharing_title_words(self, text: str) -> np.ndarray:
        """Mask of items whose title shares a content word with `text`."""
        mask = np.zeros(len(self.catalog), dtype=bool)
        for word in content_words(text):
            found = self._title_words.get(word)
            if found is not None:
                mask[found] = True
        return mask

    @cached_property
    def _values(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        from whyrec.text.encoder import encode_cached

        names = [
            (f, v)
            for f in self.catalog.fields
            if len(self.catalog.value_counts(f)) <= MAX_FIELD_VALUES
            for v in sorted(self.catalog.value_counts(f))
            if not v.replace(".", "", 1).isdigit()
        ]
        return names, encode_cached([v for _, v in names], None, "values", "encoding values")

    @cached_property
    def _incidence(self) -> sp.csc_matrix:
        """Items × values (in `_values` order): which item carries which value. One pass
        over the catalog, so a matched value costs a column look-up, not a scan."""
        names, _ = self._values
        column = {(f, v.lower()): i for i, (f, v) in enumerate(names)}
        rows, cols = [], []
        for field_name in {f for f, _ in names}:
            for position, values in enumerate(self.catalog.attributes[field_name]):
                for value in values:
                    found = column.get((field_name, value.lower()))
                    if found is not None:
                        rows.append(position)
                        cols.append(found)
        data = np.ones(len(rows), dtype=np.float64)
        shape = (len(self.catalog), len(names))
        matrix = sp.csc_matrix((data, (rows, cols)), shape=shape)
        matrix.data[:] = 1.0  # a value listed twice for one item still counts once
        return matrix

    def similarity(self, text: str, query: np.ndarray | None = None) -> np.ndarray:
        """Cosine of `text` with every item's text; title-free where a title shares a word."""
        if query is None:
            query = self._encode([text])[0]
        similarity = self.item_vectors @ query
        if not self.title_guard:
            return similarity
        shared = np.flatnonzero(self.sharing_title_words(text))
        if len(shared):  # only the few items sharing a title word are compared again
            similarity[shared] = self.untitled_vectors[shared] @ query
        return similarity

    def named_values(self, text: str) -> list[tuple[str, str, float]]:
        """(field, value, cosine) of the catalog values `text` names (the ones `_score`
        boosts), closest first. Computed afresh: `last_matches` belongs to the last call,
        which another request may have made since."""
        names, vectors = self._values
        if not len(names):
            return []
        cosines = vectors @ self._encode([text])[0]
        named = np.flatnonzero(cosines >= VALUE_MATCH)
        named = named[np.argsort(-cosines[named], kind="stable")]
        return [(names[c][0], names[c][1], float(cosines[c])) for c in named]

    def item_cosines(self, text: str, positions: np.ndarray) -> np.ndarray:
        """Cosine of `text` with the whole text of the items at `positions`."""
        return self.item_vectors[positions] @ self._encode([text])[0]

    def __call__(self, wishes: list[tuple[str, bool]]) -> np.ndarray | None:
        if not wishes:
            return None
        key = tuple(wishes)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self._score(wishes)
        self._last = (key, result)
        return result

    def _score(self, wishes: list[tuple[str, bool]]) -> np.ndarray | None:
        queries = self._encode([text for text, _ in wishes])
        names, value_vectors = self._values
        total = np.zeros(len(self.catalog), dtype=np.float64)
        used = False
        self.last_matches = []
        for (text, positive), query in zip(wishes, queries, strict=True):
            sign = 1.0 if positive else -1.0
            similarity = self.similarity(text, query)
            matched = np.flatnonzero(value_vectors @ query >= VALUE_MATCH) if len(names) else []
            if similarity.max() < self.min_match and not len(matched):
                continue
            used = True
            spread = similarity.std() or 1.0
            total += sign * similarity
            if self.query_model is not None:
                # the text model's own reading, on the same scale as the encoder's cosine
                total += sign * _zscore(self.query_model(text)) * spread
            if len(matched):
                cosines = value_vectors[matched] @ query
                for column, cosine in zip(matched, cosines, strict=True):
                    field_name, value = names[column]
                    self.last_matches.append((text, field_name, value, float(cosine)))
                # a named value outweighs loose text similarity, the more so the closer it is
                boost = self._incidence[:, matched] @ cosines.astype(np.float64)
                total += sign * boost * VALUE_BOOST * spread
        return total if used else None
