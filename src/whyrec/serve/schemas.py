"""What the API accepts and answers, as pydantic models (these make the OpenAPI spec).

Every input has bounds, so a malformed or oversized request is a clear 422, never a
crash or a slow request. The OpenAPI document says exactly what is accepted: "exactly
one of" rules are `oneOf`s, blank strings are excluded by a pattern, and the filter
fields and values are the served catalog's (`catalog_filter_schema`, added by the app).
Explanations are typed by `whyrec.explain.schema`: the `Explanation.to_dict()` evidence
plus the rendered `text`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from whyrec.engine import MAX_INEXACT_TITLES
from whyrec.explain.schema import (
    ExplanationData,
    HistoryContributionData,
    TurnExplanationData,
)

MAX_K = 100
MAX_HISTORY = 500
MAX_TEXT = 2000
MAX_EVENTS = 1000
MAX_FILTER_VALUES = 50
MAX_VALUE_LENGTH = 200

NOT_BLANK = r"[^ \t\n\r\f\v]"
"""A string must hold something besides spaces (ASCII whitespace, which every regex
dialect, JSON Schema's included, reads the same way)."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK)]
Value = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_VALUE_LENGTH, pattern=NOT_BLANK)
]
Year = Annotated[int, Field(ge=0, le=3000)]


def exactly_one_of(*names: str) -> dict:
    """JSON Schema for "exactly one of these fields is present"."""
    return {"oneOf": [{"required": [name]} for name in names]}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


FilterValues = Annotated[list[Value], Field(min_length=1, max_length=MAX_FILTER_VALUES)]


class Filters(Strict):
    """Hard constraints: every `include` field must match one of its values; no `exclude`
    value may match; years are inclusive (a range that runs backwards matches nothing).
    The fields and values are the catalog's, listed in this document."""

    include: dict[Value, FilterValues] = Field(
        default_factory=dict, max_length=20, examples=[{"genres": ["Animation"]}]
    )
    exclude: dict[Value, FilterValues] = Field(
        default_factory=dict, max_length=20, examples=[{"genres": ["Horror"]}]
    )
    year_min: Year = None  # type: ignore[assignment]  # absent means open; null is refused
    year_max: Year = None  # type: ignore[assignment]


def catalog_filter_schema(fields: dict[str, list[str]]) -> dict:
    """The `include`/`exclude` schema for one catalog: its fields, each with its values."""
    return {
        "type": "object",
        "maxProperties": 20,
        "additionalProperties": False,
        "properties": {
            name: {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_FILTER_VALUES,
                "items": {"type": "string", "enum": values},
            }
            for name, values in fields.items()
        },
    }


class Person(Strict):
    """Exactly one of a known `user_id` or a `history` of item ids or titles."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("user_id", "history")
    )

    user_id: Id = Field(default=None, examples=["1"])  # type: ignore[assignment]
    history: Annotated[list[Id], Field(min_length=1, max_length=MAX_HISTORY)] = Field(
        default=None,  # type: ignore[assignment]
        examples=[["1", "Toy Story"]],
        description=f"Item ids or titles, oldest first; at most {MAX_HISTORY}. At most "
        f"{MAX_INEXACT_TITLES} distinct entries may be loose titles (typos, partial titles, "
        "matched against the whole catalog); a loose title beyond those is not found (404).",
    )
    k: int = Field(default=10, ge=1, le=MAX_K)
    filters: Filters | None = None
    reasons: int = Field(default=3, ge=1, le=10, description="History items cited per item.")

    @model_validator(mode="after")
    def _one_person(self) -> Person:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id or history")
        return self


class RecommendRequest(Person):
    explain: bool = Field(default=True, description="Attach the full evidence and its text.")
    query: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]
        | None
    ) = Field(
        default=None,
        description="A description in words, matched against item text; with no user_id "
        "or history it alone says what is wanted.",
        examples=["a heist film with a twist"],
    )

    @model_validator(mode="after")
    def _one_person(self) -> RecommendRequest:
        if self.user_id is not None and self.history is not None:
            raise ValueError("give exactly one of user_id or history, not both")
        if self.user_id is None and self.history is None and self.query is None:
            raise ValueError("give exactly one of user_id or history, or a query")
        return self


class ExplainRequest(Person):
    item_id: Id = Field(description="The item to explain: an item id or a title.")


class Card(BaseModel):
    """An item as the page shows it."""

    item_id: str
    title: str
    year: int | None = None
    attributes: dict[str, list[str]] = Field(default_factory=dict)


class RecommendedItem(Card):
    """An item of a ranked list (the core `ItemList` entry) with its card fields."""

    rank: int
    score: float
    because: list[HistoryContributionData] = Field(default_factory=list)
    explanation: ExplanationData | None = None


class RecommendResponse(BaseModel):
    user_id: str | None = None
    items: list[RecommendedItem]


class ExplainResponse(BaseModel):
    explanation: ExplanationData
    item: Card


class SessionRequest(Strict):
    user_id: Id = Field(default=None, description="Talk as a user of the training data.")  # type: ignore[assignment]


class SessionCreated(BaseModel):
    session_id: str
    token: str = Field(description="Send as `Authorization: Bearer TOKEN` for this session.")
    greeting: str = Field(
        default="", description="An opening line worded from this catalog, for a chat page."
    )


class Reaction(Strict):
    item_id: Id
    liked: bool


class MessageRequest(Strict):
    """Either words (`text`) or a like/dislike on an item (`reaction`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("text", "reaction"))

    text: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NOT_BLANK)
    ] = Field(default=None, examples=["a funny animated film from the 90s"])  # type: ignore[assignment]
    reaction: Reaction = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_kind(self) -> MessageRequest:
        if (self.text is None) == (self.reaction is None):
            raise ValueError("give exactly one of text or reaction")
        return self


class TurnItem(Card):
    """A conversation's item: the same entry as a recommended item's (rank and score are
    absent from turns stored before they were added)."""

    rank: int | None = None
    score: float | None = None
    because: list[HistoryContributionData] = Field(default_factory=list)
    explanation: TurnExplanationData | None = None


class TurnResponse(BaseModel):
    turn: int
    reply: str
    items: list[TurnItem]
    question: str | None = None
    trace: dict[str, Any] | None = Field(
        None, description="With an LLM configured: its calls, fallbacks and repairs this turn."
    )


class Message(BaseModel):
    turn: int
    role: Literal["user", "assistant"]
    text: str
    created: float
    items: list[TurnItem] = Field(default_factory=list)
    question: str | None = None
    reaction: Reaction | None = None


class SessionView(BaseModel):
    session_id: str
    user_id: str | None
    turn: int
    messages: list[Message]


class SearchResponse(BaseModel):
    items: list[Card]


class FeedbackIn(Strict):
    """An interaction, rating, like or dislike; `timestamp` in seconds since the epoch.

    A rating at or above the bundle's positive threshold (its `--min-rating`, else the
    middle of its rating scale) counts as a like; a lower one marks the item as seen."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {"anyOf": [{"required": ["user_id"]}, {"required": ["session_id"]}]},
                {
                    "anyOf": [
                        {"properties": {"kind": {"enum": ["interaction", "like", "dislike"]}}},
                        {"required": ["rating"]},
                    ]
                },
            ]
        },
    )

    item_id: Id
    kind: Literal["interaction", "rating", "like", "dislike"] = "interaction"
    user_id: Id = None  # type: ignore[assignment]
    session_id: Id = None  # type: ignore[assignment]
    rating: float = Field(default=None, ge=-1e6, le=1e6)  # type: ignore[assignment]
    timestamp: float = Field(default=None, ge=0, le=1e11)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _complete(self) -> FeedbackIn:
        if self.user_id is None and self.session_id is None:
            raise ValueError("give a user_id or a session_id")
        if self.kind == "rating" and self.rating is None:
            raise ValueError("a rating event needs a rating")
        return self


class FeedbackRequest(Strict):
    events: Annotated[list[FeedbackIn], Field(min_length=1, max_length=MAX_EVENTS)]


class FeedbackResponse(BaseModel):
    accepted: int
    ids: list[int]


class ErrorBody(BaseModel):
    status: int
    message: str
    details: list[str] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorBody
