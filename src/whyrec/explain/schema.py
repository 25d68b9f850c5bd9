"""The serialized explanation as pydantic models: what `Explanation.to_dict()` (plus the
rendered `text`) holds, field by field, for the API's OpenAPI document and its checks.

The evidence dataclasses stay plain (building them is on every explained request's path,
and `to_dict` is written out by hand for speed); these models describe their JSON form.
`tests/test_explanations.py` checks that real explanations round-trip through them
unchanged, so a field added to a `to_dict` without its model here fails a test.
"""

from __future__ import annotations

from pydantic import BaseModel


class _Data(BaseModel):
    pass


class HistoryContributionData(_Data):
    """A cited history item (`evidence.HistoryContribution`)."""

    item_id: str
    title: str
    contribution: float
    share: float


class PathData(_Data):
    """A liked item sharing an attribute value with the explained one (`PathEvidence`)."""

    from_item_id: str
    from_title: str
    field: str
    value: str
    weight: float


class SharedValueData(_Data):
    """An attribute value the cited history items have too (`SharedValue`)."""

    field: str
    value: str
    weight: float
    liked_titles: list[str]


class ConstraintCheckData(_Data):
    """How the item meets one stated constraint (`filters.ConstraintCheck`)."""

    kind: str
    field: str
    wanted: list[str]
    item_values: list[str]
    satisfied: bool


class CollaborativeData(_Data):
    """Other users with the cited items, and how many of them have this one too."""

    cited_item_ids: list[str]
    users_with_cited: int
    users_with_both: int
    fraction: float
    per_cited_item: list[int]


class ConfidenceData(_Data):
    """How safely the item sits in the list (`Confidence`)."""

    label: str
    margin: float | None
    reference_score: float
    scale: float


class MissingValueData(_Data):
    """A value the history favours and the top items have, which this item lacks."""

    field: str
    value: str
    history_share: float
    top_share: float


class WhyNotData(_Data):
    """Why the item is not (or barely not) in the top-k (`WhyNot`)."""

    k: int
    rank: int | None
    rank_unfiltered: int | None
    cutoff_score: float | None
    scorable: bool
    filter_violations: list[ConstraintCheckData]
    missing_values: list[MissingValueData]
    pushing_down: list[HistoryContributionData]


class NamedValueData(_Data):
    """An attribute value of the item that a description names, with its cosine."""

    field: str
    value: str
    cosine: float


class DescriptionData(_Data):
    """What made a description in words fit the item (`DescriptionMatch`): the values
    named, the text cosine, popularity, the co-chosen titles that lifted it."""

    text: str
    cosine: float
    values: list[NamedValueData]
    chosen_by: int
    neighbours: list[str]


class ExplanationData(_Data):
    """One explained item (`Explanation.to_dict()`) and its rendered sentences."""

    item_id: str
    title: str
    score: float | None
    rank: int | None
    k: int
    recommended: bool
    history_method: str
    history: list[HistoryContributionData]
    cited_share: float
    paths: list[PathData]
    shared_values: list[SharedValueData]
    constraints: list[ConstraintCheckData]
    collaborative: CollaborativeData | None
    confidence: ConfidenceData | None
    why_not: WhyNotData | None
    terms: dict[str, float] = {}
    description: DescriptionData | None = None
    text: str


class MatchData(_Data):
    """A wanted attribute value the item has (a conversation's stated wish)."""

    field: str
    value: str


class TurnExplanationData(ExplanationData):
    """A conversation's explanation: the wanted values the item has are named too."""

    matches: list[MatchData] = []
