"""Directions in which a list can move, measured on the catalog and the interactions.

A critique ("older", "less known", "darker") or a quality word ("best", "underrated")
names a direction; this module turns it into one number per item, from data only:

- year: the release year;
- popularity: log of the number of users who interacted with the item;
- quality: the mean rating shrunk towards the global mean by the median number of
  ratings an item has (a Bayesian average, so three 5-star ratings do not beat a
  thousand 4.3s); without ratings, popularity stands in;
- concept: how close each item is to a phrase ("dark", "violence"), read by the
  sentence encoder on the item's text and on the attribute values near the phrase.

`describe_shift` says, after a move, which attribute values gained or lost ground in
the list, so the reply can tell what moved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cached_property

import numpy as np

from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset

NUMERIC_KINDS = ("year", "popularity", "quality")
SHIFT_VALUES = 2
"""Attribute values named per side in the "what moved" sentence."""

SEED_SHARE = 0.01
SEED_MIN = 10
"""The items closest to a concept (this share of the catalog, at least this many) define
its direction in the item-text space."""

ConceptScorer = Callable[[list[tuple[str, bool]]], np.ndarray | None]


def _z(values: np.ndarray) -> np.ndarray:
    """Standardised values; NaN (unknown year) becomes 0, the mean."""
    finite = np.isfinite(values)
    out = np.zeros(len(values), dtype=np.float64)
    if finite.sum() >= 2:
        chosen = values[finite].astype(np.float64)
        out[finite] = (chosen - chosen.mean()) / (chosen.std() or 1.0)
    return out


class ItemMeasures:
    """Per-item measures for critiques and superlatives, built once per engine."""

    def __init__(self, train: Dataset, concept_scorer: ConceptScorer | None = None) -> None:
        self.catalog: Catalog = train.catalog
        self.train = train
        self.concept_scorer = concept_scorer
        self._concepts: dict[str, np.ndarray | None] = {}

    @cached_property
    def dense_fields(self) -> list[str]:
        """Fields whose typical value many items carry (genres, categories): the ones a
        "what moved" sentence speaks of. A tag given to two films moving is noise."""
        n = len(self.catalog)
        return [
            name
            for name in self.catalog.fields
            if n and np.median(list(self.catalog.value_counts(name).values()) or [0]) >= 0.01 * n
        ]

    def warm(self) -> None:
        """Compute what the first critique or superlative would: the measures, the item
        vectors and the directions of the concepts the lexicon names (one batch)."""
        from whyrec.conversation.lexicon import CRITIQUE_WORDS

        _ = self.quality, self.dense_fields
        if self.concept_scorer is None:
            return
        for name in ("item_vectors", "untitled_vectors"):
            getattr(self.concept_scorer, name, None)
        concepts = sorted({c for kind, c, _ in CRITIQUE_WORDS.values() if kind == "concept"})
        encode = getattr(self.concept_scorer, "_encode", None)
        if encode is not None:
            encode(concepts)
        for concept in concepts:
            self.concept(concept)

    @cached_property
    def popularity(self) -> np.ndarray:
        return np.log1p(self.train.item_popularity().astype(np.float64))

    @cached_property
    def quality(self) -> np.ndarray:
        """Mean rating shrunk towards the global mean (count of the median item as prior)."""
        frame = self.train.interactions
        if "rating" not in frame or not frame["rating"].notna().any():
            return self.popularity
        rated = frame.dropna(subset=["rating"])
        stats = rated.groupby("item_id")["rating"].agg(["sum", "count"])
        prior_mean = float(rated["rating"].mean())
        prior_count = float(stats["count"].median())
        out = np.full(len(self.catalog), prior_mean, dtype=np.float64)
        positions = np.array([self.catalog.position(str(i)) for i in stats.index], dtype=np.int64)
        out[positions] = (stats["sum"].to_numpy() + prior_mean * prior_count) / (
            stats["count"].to_numpy() + prior_count
        )
        return out

    def values(self, kind: str, concept: str = "") -> np.ndarray | None:
        """Raw measure per item (NaN where unknown); None when a concept matches nothing."""
        if kind == "year":
            return self.catalog.years.astype(np.float64)
        if kind == "popularity":
            return self.popularity
        if kind == "quality":
            return self.quality
        if kind == "underrated":
            return _z(self.quality) - _z(self.popularity)
        return self.concept(concept)

    def direction(self, kind: str, concept: str = "") -> np.ndarray | None:
        """Standardised measure: +1 is one standard deviation further along the direction."""
        raw = self.values(kind, concept)
        return None if raw is None else _z(raw)

    def concept(self, text: str) -> np.ndarray | None:
        """Closeness to a phrase: the encoder's match on item text and values, plus the
        direction from the catalog's centre to the items that match best, so items that
        resemble them (same genres, similar text) move too, tagged or not."""
        if self.concept_scorer is None or not text:
            return None
        if text not in self._concepts:
            direct = self.concept_scorer([(text, True)])
            vectors = getattr(self.concept_scorer, "untitled_vectors", None)
            if direct is not None and vectors is not None:
                seeds = np.argsort(-direct)[: max(SEED_MIN, int(SEED_SHARE * len(direct)))]
                axis = vectors[seeds].mean(axis=0) - vectors.mean(axis=0)
                direct = _z(direct) + _z(vectors @ axis)
            self._concepts[text] = direct
        return self._concepts[text]


def describe_shift(catalog: Catalog, fields: list[str], before: list[int], after: list[int]) -> str:
    """ "fewer Crime and Thriller titles, more Comedy": the values of `fields` whose share
    changed most."""
    if not before or not after:
        return ""
    changes: Counter[tuple[str, str]] = Counter()
    for name in fields:
        for group, sign in ((before, -1.0 / len(before)), (after, 1.0 / len(after))):
            for position in group:
                for value in catalog.values(name, position):
                    changes[(name, value)] += sign
    gained = [v for (_, v), d in changes.most_common() if d > 0.15][:SHIFT_VALUES]
    lost = [v for (_, v), d in sorted(changes.items(), key=lambda kv: kv[1]) if d < -0.15]
    parts = []
    if lost[:SHIFT_VALUES]:
        parts.append(f"fewer {' and '.join(lost[:SHIFT_VALUES])} titles")
    if gained:
        parts.append(f"more {' and '.join(gained)}")
    return ", ".join(parts)


def describe_numeric_shift(
    catalog: Catalog, measures: ItemMeasures, kind: str, before: list[int], after: list[int]
) -> str:
    """ "median year 1994 → 2008" for a move along a numeric direction."""
    if not before or not after:
        return ""
    if kind == "year":
        b, a = np.nanmedian(catalog.years[before]), np.nanmedian(catalog.years[after])
        if np.isnan(a) or np.isnan(b):
            return ""
        return f"median year {int(b)} → {int(a)}"
    if kind == "popularity":
        counts = measures.train.item_popularity()
        return (
            f"median {int(np.median(counts[before]))} → {int(np.median(counts[after]))} "
            "people who watched them"
        )
    if kind == "quality":
        q = measures.quality
        return f"mean rating {np.mean(q[before]):.2f} → {np.mean(q[after]):.2f}"
    return ""


CRITIQUE_WEIGHT = 2.0
"""Push of one critique, in standard deviations of its direction, for bundles trained
without calibration; `whyrec train` fits it per bundle on simulated critiques
(`PolicyConfig.critique_weight`, see `conversation.calibrate.fit_critique_weight`)."""
RANK_WEIGHT = 3.0
"""Push of a superlative's measure, in standard deviations of it. Not fitted: nothing in
the data says which item a person asking for "the best" wanted, so there is no target to
fit to. It is set above any calibrated critique weight on the grid's scale (a
superlative asks to *rank by* the measure, a critique only to move along it), so
"best documentaries" ranks by quality first and the belief breaks ties."""
RANKINGS: dict[str, tuple[tuple[str, float], ...]] = {
    "quality": (("quality", 1.0),),
    "underrated": (("underrated", 1.0),),
    "popular": (("popularity", 1.0),),
    "classic": (("quality", 1.0), ("popularity", 0.5), ("year", -0.5)),
}
"""Superlative → measures it ranks by ("a classic" is well rated, known and older)."""


def steering(
    critiques: list[dict],
    rank_by: str | None,
    measures: ItemMeasures,
    critique_weight: float = CRITIQUE_WEIGHT,
) -> np.ndarray | None:
    """The score added for a conversation's critiques and superlative (None: nothing)."""
    total: np.ndarray | None = None

    def add(direction: np.ndarray | None, weight: float) -> None:
        nonlocal total
        if direction is not None:
            total = weight * direction if total is None else total + weight * direction

    for critique in critiques:
        add(
            measures.direction(critique["kind"], critique.get("concept", "")),
            critique_weight * critique["sign"],
        )
    for kind, weight in RANKINGS.get(rank_by or "", ()):
        add(measures.direction(kind), RANK_WEIGHT * weight)
    return total


def critique_bounds(critiques: list[dict], measures: ItemMeasures) -> np.ndarray | None:
    """Items past every numeric critique's bound ("older" than the list was), or None."""
    mask: np.ndarray | None = None
    for critique in critiques:
        bound = critique.get("bound")
        if bound is None:
            continue
        values = measures.values(critique["kind"], critique.get("concept", ""))
        if values is None:
            continue
        with np.errstate(invalid="ignore"):
            passed = critique["sign"] * (values - bound) > 0
        mask = passed if mask is None else mask & passed
    return mask


def critique_bound(
    measures: ItemMeasures, kind: str, concept: str, reference: list[int]
) -> float | None:
    """The value new items must pass: the mean over the reference items (the list shown,
    the item pointed at, or the titles named with the critique); NaN years ignored."""
    if not reference:
        return None
    raw = measures.values(kind, concept)
    if raw is None:
        return None
    values = raw[np.asarray(reference, dtype=np.int64)]
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None
