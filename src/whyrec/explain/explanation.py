"""An explanation is data: typed evidence with weights, rendered elsewhere.

The CLI, the API, the chat and an LLM prompt all read the same `Explanation`, so what a
person is told is exactly what was measured. `to_dict()` gives plain JSON types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from whyrec.explain.evidence import HistoryContribution
from whyrec.filters import ConstraintCheck

HIGH, MEDIUM, LOW = "high", "medium", "low"

# The named terms a score is the sum of, when a list is ranked by such a sum (a request
# described in words, a conversation): `Explanation.terms` maps each to its value.
TERM_HISTORY = "history"
"""z of the collaborative model's score for the history."""
TERM_POPULARITY = "popularity"
"""The popularity prior (weighted z, or exponent × log, of how many people chose it)."""
TERM_MATCH = "match"
"""z of a description's text match."""
TERM_NEIGHBOURS = "neighbours"
"""Match plus popularity, averaged over the titles chosen with the item."""
TERM_DISLIKES = "dislikes"
"""Minus the model's (positive) z-score for the titles turned down."""
TERM_PREFERRED = "preferred values"
"""Values the conversation prefers (soft constraints), plus or minus."""
TERM_CLOSE_TO_LIKED = "close to liked"
"""Personalized PageRank from the titles liked in the conversation."""
TERM_WISHES = "wishes"
"""The conversation's free-text wishes matched against item text."""
TERM_STEERING = "steering"
"""Critiques ("older", "lighter") and superlatives ("best") moving the list."""


@dataclass(frozen=True)
class PathEvidence:
    """A liked history item shares the attribute value `field=value` with the explained item.

    `weight` = idf(value) × the liked item's share of the score (see graph.AttributePath).
    """

    from_position: int
    from_item_id: str
    from_title: str
    field: str
    value: str
    weight: float

    def to_dict(self) -> dict:
        # written out rather than dataclasses.asdict, which deep-copies field by field and
        # was a third of an explained /v1/recommend's time
        return {
            "from_item_id": self.from_item_id,
            "from_title": self.from_title,
            "field": self.field,
            "value": self.value,
            "weight": round(self.weight, 6),
        }


@dataclass(frozen=True)
class SharedValue:
    """An attribute value of the explained item that the cited history items have too."""

    field: str
    value: str
    weight: float
    liked_titles: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "field": self.field,
            "value": self.value,
            "weight": round(self.weight, 6),
            "liked_titles": list(self.liked_titles),
        }


@dataclass(frozen=True)
class CollaborativeEvidence:
    """Other users who interacted with the cited history items, and how many of them also
    interacted with the explained item (training interactions; the asking user excluded)."""

    cited_item_ids: tuple[str, ...]
    users_with_cited: int
    users_with_both: int
    per_cited_item: tuple[int, ...]

    @property
    def fraction(self) -> float:
        return self.users_with_both / self.users_with_cited if self.users_with_cited else 0.0

    def to_dict(self) -> dict:
        return {
            "cited_item_ids": list(self.cited_item_ids),
            "users_with_cited": self.users_with_cited,
            "users_with_both": self.users_with_both,
            "fraction": round(self.fraction, 6),
            "per_cited_item": list(self.per_cited_item),
        }


@dataclass(frozen=True)
class Confidence:
    """How safely the item sits in the list (see `explainer.confidence_of` for thresholds).

    `margin` is (score − reference) / scale: reference = mean score of the next items
    after the top-k, scale = spread of the head of the ranking.
    """

    label: str
    margin: float
    reference_score: float
    scale: float

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "margin": round(self.margin, 6) if math.isfinite(self.margin) else None,
            "reference_score": round(self.reference_score, 6),
            "scale": round(self.scale, 6),
        }


@dataclass(frozen=True)
class MissingValue:
    """An attribute value the user's history favours and the top items have, but this item lacks.

    `history_share`: share of the history items having it; `top_share`: share of the
    top-k items having it.
    """

    field: str
    value: str
    history_share: float
    top_share: float

    def to_dict(self) -> dict:
        return {
            "field": self.field,
            "value": self.value,
            "history_share": round(self.history_share, 6),
            "top_share": round(self.top_share, 6),
        }


@dataclass(frozen=True)
class WhyNot:
    """Why an item is not (or barely not) in the top-k.

    `rank` is its place among the items the request allows (None when the filters rule it
    out or the model cannot score it), `rank_unfiltered` its place without the filters.
    `cutoff_score` is the score of the k-th item, the one it would have to beat.
    """

    k: int
    rank: int | None
    rank_unfiltered: int | None
    cutoff_score: float | None
    filter_violations: tuple[ConstraintCheck, ...]
    missing_values: tuple[MissingValue, ...]
    pushing_down: tuple[HistoryContribution, ...]
    scorable: bool = True

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "rank": self.rank,
            "rank_unfiltered": self.rank_unfiltered,
            "cutoff_score": None if self.cutoff_score is None else round(self.cutoff_score, 6),
            "scorable": self.scorable,
            "filter_violations": [c.to_dict() for c in self.filter_violations],
            "missing_values": [m.to_dict() for m in self.missing_values],
            "pushing_down": [c.to_dict() for c in self.pushing_down],
        }


@dataclass(frozen=True)
class DescriptionMatch:
    """How a description in words ("a heist film with a twist") ranked this item.

    The score's terms are the explanation's `terms` (match, popularity, neighbours and,
    with a history, history); this holds what makes the match concrete. `values` are the
    item's own attribute values the description names, with their cosine; `cosine` is
    the description's cosine with the item's whole text; `chosen_by` counts the training
    users who chose it; `neighbours` names the co-chosen titles that lifted it most.
    """

    text: str
    cosine: float
    values: tuple[tuple[str, str, float], ...]
    chosen_by: int
    neighbours: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "cosine": round(self.cosine, 6),
            "values": [
                {"field": name, "value": value, "cosine": round(cosine, 6)}
                for name, value, cosine in self.values
            ],
            "chosen_by": self.chosen_by,
            "neighbours": list(self.neighbours),
        }


@dataclass
class Explanation:
    """Everything known about why one item got its place for one history.

    `history` lists the cited history items (largest positive weights first);
    `history_method` is "exact" (model contributions), "occlusion" (leave-one-out score
    drops from one batched scoring call) or "none" (empty history). `cited_share` is the
    cited items' combined share of the score (exact) or of the total drop (occlusion).
    `terms` holds the exact named terms the ranked score is the sum of, when the list
    was ranked by such a sum (`TERM_*`: a described request, a conversation), so they add
    up to `score`; `description` is set when the request described what it wants in
    words.
    """

    position: int
    item_id: str
    title: str
    score: float
    rank: int | None
    k: int
    recommended: bool
    history_method: str
    history: list[HistoryContribution] = field(default_factory=list)
    cited_share: float = 0.0
    paths: list[PathEvidence] = field(default_factory=list)
    shared_values: list[SharedValue] = field(default_factory=list)
    constraints: list[ConstraintCheck] = field(default_factory=list)
    collaborative: CollaborativeEvidence | None = None
    confidence: Confidence | None = None
    why_not: WhyNot | None = None
    terms: dict[str, float] = field(default_factory=dict)
    description: DescriptionMatch | None = None

    def to_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "score": round(self.score, 6) if math.isfinite(self.score) else None,
            "rank": self.rank,
            "k": self.k,
            "recommended": self.recommended,
            "history_method": self.history_method,
            "history": [c.to_dict() for c in self.history],
            "cited_share": round(self.cited_share, 6),
            "paths": [p.to_dict() for p in self.paths],
            "shared_values": [s.to_dict() for s in self.shared_values],
            "constraints": [c.to_dict() for c in self.constraints],
            "collaborative": self.collaborative.to_dict() if self.collaborative else None,
            "confidence": self.confidence.to_dict() if self.confidence else None,
            "why_not": self.why_not.to_dict() if self.why_not else None,
            "terms": {name: round(value, 6) for name, value in self.terms.items()},
            "description": self.description.to_dict() if self.description else None,
        }
