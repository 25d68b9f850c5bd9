"""Soft wishes ("mind-bending", "feel-good") matched with the shipped sentence encoder.

A wish is compared with two things: the attribute values of the catalog (so
"mind-bending" can find the tag "thought-provoking") and the text of every item. A
wish that resembles nothing closely enough (leftover words such as "ideas") adds
nothing rather than noise. Everything is encoded lazily, on the first wish, and the
item vectors are cached on disk by the encoder, so a conversation without wishes never
pays for the encoder.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from whyrec.data.catalog import Catalog

VALUE_MATCH = 0.5
"""Cosine above which a wish is taken to name an attribute value ("mind-bending" →
"mindfuck" 0.50, "dark and gritty" → "gritty" 0.80; "ideas" → "movies" only 0.46)."""
ITEM_MATCH = 0.3
"""A wish whose best item-text cosine stays below this is ignored as too vague
("mind-bending" reaches 0.34 on ml-latest-small, leftover words like "tonight" 0.28)."""
VALUE_BOOST = 5.0
"""Boost, in standard deviations of the text similarity, for items with a matched value."""


def encoder_available() -> bool:
    """Whether the shipped encoder can be loaded (its package is installed)."""
    from whyrec.errors import WhyrecError
    from whyrec.text.encoder import encoder_directory

    try:
        encoder_directory()
    except WhyrecError:
        return False
    return True


class SemanticWishes:
    """A `WishScorer`: wishes → one score per catalog item (None when nothing matched)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
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
    def _values(self) -> tuple[list[tuple[str, str]], np.ndarray]:
        from whyrec.text.encoder import encode_texts

        names = [
            (f, v)
            for f in self.catalog.fields
            for v in sorted(self.catalog.value_counts(f))
            if not v.replace(".", "", 1).isdigit()
        ]
        return names, encode_texts([v for _, v in names], description="encoding values")

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
            similarity = self.item_vectors @ query
            matched = np.flatnonzero(value_vectors @ query >= VALUE_MATCH) if len(names) else []
            if similarity.max() < ITEM_MATCH and not len(matched):
                continue
            used = True
            total += sign * similarity
            for column in matched:
                field_name, value = names[column]
                cosine = float(value_vectors[column] @ query)
                self.last_matches.append((text, field_name, value, cosine))
                has = self.catalog.mask_with_value(field_name, [value])
                # a named value outweighs loose text similarity, the more so the closer it is
                total += sign * has * cosine * VALUE_BOOST * (similarity.std() or 1.0)
        return total if used else None
