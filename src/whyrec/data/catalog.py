"""The item catalog: what exists, what it is called, and what it is like.

Everything the system says about an item comes from here, so titles, years, attribute
values and text live together and are addressed by one integer position. The position
is also the column of the item in every model's score matrix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from whyrec.data.vocabulary import Vocabulary
from whyrec.errors import DataError, NotFoundError
from whyrec.ranking import in_sorted

_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_TRAILING_ARTICLE = re.compile(
    r"^(?P<body>.*?),\s*(?P<article>the|a|an|les|la|le|l'|il|el|der|die|das)\s*$"
)
_NON_WORD = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")

FUZZY_CUTOFF = 80.0
"""Minimum `title_similarity` (0-100) for a typo-tolerant title match to be accepted."""


def year_from_title(title: str) -> float:
    """Return the year written as "(1995)" at the end of a title, or NaN."""
    found = _YEAR_IN_TITLE.search(title.strip())
    return float(found.group(1)) if found else math.nan


def title_key(title: str, keep_year: bool = True) -> str:
    """Normalize a title for matching.

    MovieLens writes "American President, The (1995)"; people write "the american
    president". Moving the trailing article to the front and dropping punctuation makes
    both the same key.
    """
    text = title.strip()
    year = ""
    found = _YEAR_IN_TITLE.search(text)
    if found:
        year = found.group(1)
        text = text[: found.start()].strip()
    article = _TRAILING_ARTICLE.match(text.lower())
    text = f"{article['article']} {article['body']}" if article else text.lower()
    text = _SPACES.sub(" ", _NON_WORD.sub(" ", text)).strip()
    return f"{text} {year}".strip() if keep_year and year else text


def title_similarity(query_key: str, keys: Sequence[str]) -> np.ndarray:
    """0-100 similarity of a normalized query to each key.

    Edit-distance ratio catches typos ("toy stroy"); a slightly discounted token-set ratio
    catches partial titles ("shawshank"), but only towards titles at least as long as the
    query, so "jurassic park and heat" does not match the one-word title "Heat". WRatio
    alone lets short titles such as "Troy" outscore the intended one.
    """
    if not keys:
        return np.zeros(0)
    typo = process.cdist([query_key], keys, scorer=fuzz.ratio)[0]
    partial = process.cdist([query_key], keys, scorer=fuzz.token_set_ratio)[0]
    query_words = len(query_key.split())
    long_enough = np.fromiter((k.count(" ") + 1 >= query_words for k in keys), bool, len(keys))
    return np.maximum(typo, np.where(long_enough, 0.95 * partial, 0.0)).astype(np.float64)


class TitleIndex:
    """A catalog's normalized title keys, built once and shared by every title look-up:
    `Catalog.match_title` (a typed title), the conversation's mention finder and the LLM
    reply guard. Each caller keeps its own acceptance threshold (a title typed on its
    own is matched more leniently than a phrase inside a sentence), not its own index.
    """

    def __init__(self, titles: Sequence[str]) -> None:
        self.keys = [title_key(t) for t in titles]
        """Key with the year, per position."""
        self.by_key: dict[str, list[int]] = {}
        self.by_key_no_year: dict[str, list[int]] = {}
        for position, (title, key) in enumerate(zip(titles, self.keys, strict=True)):
            self.by_key.setdefault(key, []).append(position)
            self.by_key_no_year.setdefault(title_key(title, keep_year=False), []).append(position)
        self.no_year_keys = list(self.by_key_no_year)
        self.no_year_owners = list(self.by_key_no_year.values())

    def exact(self, query: str) -> list[int]:
        """Positions whose key equals the query's (with its year if it names one, then
        without), in catalog order; empty when none."""
        return self.by_key.get(title_key(query)) or self.by_key_no_year.get(
            title_key(query, keep_year=False), []
        )

    def exact_with_year(self, query: str) -> list[int]:
        """Positions matching a query that names a year, by the key with the year."""
        key = title_key(query)
        if key == title_key(query, keep_year=False):
            return []
        return list(self.by_key.get(key, []))

    def similarity(self, query: str) -> tuple[np.ndarray, list[list[int]]]:
        """`title_similarity` against the keys with years when the query names a year,
        else against the year-less keys; with the positions owning each key."""
        has_year = title_key(query) != title_key(query, keep_year=False)
        if has_year:
            return title_similarity(title_key(query), self.keys), [
                [p] for p in range(len(self.keys))
            ]
        scores = title_similarity(title_key(query, keep_year=False), self.no_year_keys)
        return scores, self.no_year_owners


@dataclass(frozen=True)
class TitleMatch:
    """The catalog position a free-text title resolved to, and how sure we are."""

    position: int
    score: float
    exact: bool


@dataclass
class Catalog:
    """Items with ids, titles, years, multi-valued attribute fields and descriptions.

    `attributes[field][position]` is a tuple of values (empty when unknown), so a field
    such as genres or tags is multi-valued without special cases.
    """

    item_ids: list[str]
    titles: list[str]
    years: np.ndarray
    attributes: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    descriptions: list[str] | None = None
    _index: Vocabulary = field(init=False, repr=False)
    _titles: TitleIndex | None = field(default=None, init=False, repr=False)
    _value_indexes: dict[str, dict[str, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False
    )
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        self.item_ids = [str(i) for i in self.item_ids]
        self.years = np.asarray(self.years, dtype=np.float64)
        if len(self.titles) != n or len(self.years) != n:
            raise DataError("catalog columns have different lengths")
        for name, values in self.attributes.items():
            if len(values) != n:
                raise DataError(f"attribute field {name!r} has {len(values)} rows, expected {n}")
        if self.descriptions is not None and len(self.descriptions) != n:
            raise DataError("catalog descriptions have a different length than the items")
        self._index = Vocabulary(self.item_ids, "item id")

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def fields(self) -> list[str]:
        """Names of the attribute fields, in a stable order."""
        return list(self.attributes)

    def has(self, item_id: str) -> bool:
        return str(item_id) in self._index

    def position(self, item_id: str) -> int:
        """Position of an item id; unknown ids are a user mistake, not a KeyError."""
        return self._index[str(item_id)]

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of many ids, -1 where an id is not in the catalog."""
        return self._index.numbers(str(i) for i in item_ids)

    def year(self, position: int) -> int | None:
        value = self.years[position]
        return None if math.isnan(value) else int(value)

    def values(self, field_name: str, position: int) -> tuple[str, ...]:
        return self.attributes.get(field_name, [()] * len(self))[position]

    def text(self, position: int, with_title: bool = True) -> str:
        """One paragraph describing the item, for language models and search.

        Without the title, the text says only what the item *is*: free-text wishes are
        matched against it where the title shares a word with the wish ("date night"
        must not find the film called Date Night)."""
        parts = [self.titles[position]] if with_title else []
        for name, values in self.attributes.items():
            if values[position]:
                parts.append(f"{name}: {', '.join(values[position])}")
        if self.descriptions and self.descriptions[position]:
            parts.append(self.descriptions[position])
        return ". ".join(parts)

    def value_counts(self, field_name: str) -> Counter[str]:
        """How many items carry each value of a field."""
        if field_name not in self.attributes:
            raise NotFoundError(f"unknown attribute field {field_name!r}; fields: {self.fields}")
        return Counter(v for values in self.attributes[field_name] for v in values)

    def mask_with_value(
        self, field_name: str, wanted: Iterable[str], among: np.ndarray | None = None
    ) -> np.ndarray:
        """Boolean mask of items having any of the wanted values (case-insensitive), over
        the catalog or over the positions `among` (a binary search per position, so a
        request ranking a few candidates never builds a catalog-sized mask)."""
        index = self._value_index(field_name)
        mask = np.zeros(len(self) if among is None else len(among), dtype=bool)
        for value in wanted:
            positions = index.get(value.lower())
            if positions is None:
                continue
            if among is None:
                mask[positions] = True
            else:
                mask |= in_sorted(among, positions)
        return mask

    def _value_index(self, field_name: str) -> dict[str, np.ndarray]:
        """Lower-cased value → positions of the items having it, built once per field."""
        if field_name not in self.attributes:
            raise NotFoundError(f"unknown attribute field {field_name!r}; fields: {self.fields}")
        index = self._value_indexes.get(field_name)
        if index is None:
            lists: dict[str, list[int]] = {}
            for position, values in enumerate(self.attributes[field_name]):
                for value in values:
                    lists.setdefault(value.lower(), []).append(position)
            index = {v: np.unique(np.asarray(p, dtype=np.int64)) for v, p in lists.items()}
            self._value_indexes[field_name] = index
        return index

    # ----- titles -------------------------------------------------------------------
    @property
    def title_index(self) -> TitleIndex:
        """The normalized title keys, built on first use."""
        if self._titles is None:
            self._titles = TitleIndex(self.titles)
        return self._titles

    def match_title(self, query: str, popularity: np.ndarray | None = None) -> TitleMatch:
        """Resolve an item id or a free-text title (with or without year, typos allowed).

        Ties among same-named items (remakes) go to the more popular one, which is what a
        person saying "Titanic" most likely means.
        """
        query = query.strip()
        if not query:
            raise NotFoundError("empty title")
        exact = self.exact_position(query, popularity)
        if exact is not None:
            return TitleMatch(exact, 100.0, True)
        return self._fuzzy_match(query, popularity)

    @property
    def fingerprint(self) -> str:
        """Names this catalog's item ids in this order: equal fingerprints, equal positions."""
        if self._fingerprint is None:
            digest = hashlib.sha256("\n".join(self.item_ids).encode("utf-8", "surrogatepass"))
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def exact_position(self, query: str, popularity: np.ndarray | None = None) -> int | None:
        """The item an id or an exact title (any case, with or without year) names, found
        by dictionary look-ups; None when only a fuzzy match could say."""
        query = query.strip()
        if query in self._index:
            return self._index[query]
        exact = self.title_index.exact(query)
        if not exact:
            return None
        return max(exact, key=lambda p: popularity[p] if popularity is not None else -p)

    def _fuzzy_match(self, query: str, popularity: np.ndarray | None) -> TitleMatch:
        """Typo-tolerant match: against year-less keys unless the query names a year."""
        scores, owners = self.title_index.similarity(query)
        top_score = float(scores.max()) if len(scores) else 0.0
        if top_score < FUZZY_CUTOFF:
            suggestions = self.suggest_titles(query)
            hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
            raise NotFoundError(f"no item titled {query!r}{hint}")
        candidates = [p for idx in np.flatnonzero(scores == top_score) for p in owners[idx]]
        best = max(candidates, key=lambda p: popularity[p] if popularity is not None else -p)
        return TitleMatch(best, top_score, False)

    def suggest_titles(self, query: str, limit: int = 3) -> list[str]:
        """The closest titles to a query, for "did you mean" messages."""
        scores = title_similarity(title_key(query), self.title_index.keys)
        return [self.titles[pos] for pos in np.argsort(-scores, kind="stable")[:limit]]

    def search(
        self, query: str, limit: int = 10, popularity: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """(position, 0-100 similarity) of the titles best matching a query, best first.

        Partial titles and typos match (see `title_similarity`); equal scores go to the
        more popular item. An exact item id comes first with score 100.
        """
        query = query.strip()
        if not query:
            return []
        scores = title_similarity(title_key(query, keep_year=False), self.title_index.keys)
        if query in self._index:
            scores[self._index[query]] = 101.0
        tie = popularity if popularity is not None else np.zeros(len(self))
        order = np.lexsort((-tie, -scores))[:limit]
        return [(int(p), min(float(scores[p]), 100.0)) for p in order]

    # ----- persistence ----------------------------------------------------------------
    def to_json_dict(self) -> dict:
        return {
            "item_ids": self.item_ids,
            "titles": self.titles,
            "years": [None if math.isnan(y) else int(y) for y in self.years],
            "attributes": {k: [list(v) for v in vals] for k, vals in self.attributes.items()},
            "descriptions": self.descriptions,
        }

    @classmethod
    def from_json_dict(cls, data: dict) -> Catalog:
        try:
            return cls(
                item_ids=data["item_ids"],
                titles=data["titles"],
                years=np.array([np.nan if y is None else y for y in data["years"]], dtype=float),
                attributes={k: [tuple(v) for v in vals] for k, vals in data["attributes"].items()},
                descriptions=data.get("descriptions"),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"catalog file is malformed: {exc}") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            return cls.from_json_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read catalog {path}: {exc}") from None

    def subset(self, positions: Sequence[int]) -> Catalog:
        """A catalog holding only the given positions, in that order."""
        pos = list(positions)
        return Catalog(
            item_ids=[self.item_ids[p] for p in pos],
            titles=[self.titles[p] for p in pos],
            years=self.years[pos],
            attributes={k: [v[p] for p in pos] for k, v in self.attributes.items()},
            descriptions=[self.descriptions[p] for p in pos] if self.descriptions else None,
        )


def decade_of(year: float) -> tuple[str, ...]:
    """The decade attribute value for a year ("1990s"), empty when the year is unknown."""
    return () if math.isnan(year) else (f"{int(year) // 10 * 10}s",)
