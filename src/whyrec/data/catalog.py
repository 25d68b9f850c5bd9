"""The item catalog: what exists, what it is called, and what it is like.

Everything the system says about an item comes from here, so titles, years, attribute
values and text live together and are addressed by one integer position. The position
is also the column of the item in every model's score matrix.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from whyrec.errors import DataError, NotFoundError

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
    _index: dict[str, int] = field(init=False, repr=False)
    _keys: list[str] | None = field(default=None, init=False, repr=False)
    _keys_no_year: dict[str, list[int]] | None = field(default=None, init=False, repr=False)

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
        self._index = {item_id: pos for pos, item_id in enumerate(self.item_ids)}
        if len(self._index) != n:
            dupes = [i for i, c in Counter(self.item_ids).items() if c > 1][:5]
            raise DataError(f"the catalog has duplicate item ids, e.g. {', '.join(dupes)}")

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
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise NotFoundError(f"unknown item id {item_id!r}") from None

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of many ids, -1 where an id is not in the catalog."""
        get = self._index.get
        return np.fromiter((get(str(i), -1) for i in item_ids), dtype=np.int64)

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

    def mask_with_value(self, field_name: str, wanted: Iterable[str]) -> np.ndarray:
        """Boolean mask of items having any of the wanted values (case-insensitive)."""
        if field_name not in self.attributes:
            raise NotFoundError(f"unknown attribute field {field_name!r}; fields: {self.fields}")
        wanted_lower = {w.lower() for w in wanted}
        return np.fromiter(
            (
                any(v.lower() in wanted_lower for v in values)
                for values in self.attributes[field_name]
            ),
            dtype=bool,
            count=len(self),
        )

    # ----- titles -------------------------------------------------------------------
    def _ensure_keys(self) -> None:
        if self._keys is None:
            self._keys = [title_key(t) for t in self.titles]
            no_year: dict[str, list[int]] = {}
            for pos, title in enumerate(self.titles):
                no_year.setdefault(title_key(title, keep_year=False), []).append(pos)
            self._keys_no_year = no_year

    def match_title(self, query: str, popularity: np.ndarray | None = None) -> TitleMatch:
        """Resolve an item id or a free-text title (with or without year, typos allowed).

        Ties among same-named items (remakes) go to the more popular one, which is what a
        person saying "Titanic" most likely means.
        """
        query = query.strip()
        if not query:
            raise NotFoundError("empty title")
        if query in self._index:
            return TitleMatch(self._index[query], 100.0, True)
        self._ensure_keys()
        assert self._keys is not None and self._keys_no_year is not None
        key = title_key(query)
        exact = [pos for pos, k in enumerate(self._keys) if k == key]
        if not exact:
            exact = self._keys_no_year.get(title_key(query, keep_year=False), [])
        if exact:
            best = max(exact, key=lambda p: popularity[p] if popularity is not None else -p)
            return TitleMatch(best, 100.0, True)
        return self._fuzzy_match(query, popularity)

    def _fuzzy_match(self, query: str, popularity: np.ndarray | None) -> TitleMatch:
        """Typo-tolerant match: against year-less keys unless the query names a year."""
        assert self._keys is not None and self._keys_no_year is not None
        has_year = not math.isnan(year_from_title(query))
        if has_year:
            keys, owners = self._keys, [[p] for p in range(len(self._keys))]
        else:
            keys, owners = list(self._keys_no_year), list(self._keys_no_year.values())
        scores = title_similarity(title_key(query, keep_year=has_year), keys)
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
        self._ensure_keys()
        assert self._keys is not None
        scores = title_similarity(title_key(query), self._keys)
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
        self._ensure_keys()
        assert self._keys is not None
        scores = title_similarity(title_key(query, keep_year=False), self._keys)
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
