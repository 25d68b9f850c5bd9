"""What the API accepts and answers, as pydantic models (these make the OpenAPI spec).

Every input has bounds, so a malformed or oversized request is a clear 422, never a
crash or a slow request. Explanations are documented as objects: their fields are the
`Explanation.to_dict()` evidence plus the rendered `text`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_K = 100
MAX_HISTORY = 500
MAX_TEXT = 2000
MAX_EVENTS = 1000

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Value = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Year = Annotated[int, Field(ge=0, le=3000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(Strict):
    """Hard constraints: every `include` field must match one of its values; no `exclude`
    value may match; years are inclusive."""

    include: dict[Value, Annotated[list[Value], Field(min_length=1, max_length=50)]] = Field(
        default_factory=dict, max_length=20, examples=[{"genres": ["Animation"]}]
    )
    exclude: dict[Value, Annotated[list[Value], Field(min_length=1, max_length=50)]] = Field(
        default_factory=dict, max_length=20, examples=[{"genres": ["Horror"]}]
    )
    year_min: Year | None = None
    year_max: Year | None = None

    @model_validator(mode="after")
    def _years_in_order(self) -> Filters:
        low, high = self.year_min, self.year_max
        if low is not None and high is not None and low > high:
            raise ValueError("year_min is after year_max")
        return self


class Person(Strict):
    """Exactly one of a known `user_id` or a `history` of item ids or titles."""

    user_id: Id | None = Field(default=None, examples=["1"])
    history: Annotated[list[Id], Field(min_length=1, max_length=MAX_HISTORY)] | None = Field(
        default=None, examples=[["1", "Toy Story"]]
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
    rank: int
    score: float
    because: list[dict[str, Any]] = Field(default_factory=list)
    explanation: dict[str, Any] | None = None


class RecommendResponse(BaseModel):
    user_id: str | None = None
    items: list[RecommendedItem]


class ExplainResponse(BaseModel):
    explanation: dict[str, Any]
    item: Card


class SessionRequest(Strict):
    user_id: Id | None = Field(default=None, description="Talk as a user of the training data.")


class SessionCreated(BaseModel):
    session_id: str
    token: str = Field(description="Send as `Authorization: Bearer TOKEN` for this session.")


class Reaction(Strict):
    item_id: Id
    liked: bool


class MessageRequest(Strict):
    """Either words (`text`) or a like/dislike on an item (`reaction`)."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)] | None = Field(
        default=None, examples=["a funny animated film from the 90s"]
    )
    reaction: Reaction | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MessageRequest:
        if (self.text is None) == (self.reaction is None):
            raise ValueError("give exactly one of text or reaction")
        if self.text is not None and not self.text.strip():
            raise ValueError("text is blank")
        return self


class TurnItem(Card):
    explanation: dict[str, Any] | None = None


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
    """An interaction, rating, like or dislike; `timestamp` in seconds since the epoch."""

    item_id: Id
    kind: Literal["interaction", "rating", "like", "dislike"] = "interaction"
    user_id: Id | None = None
    session_id: Id | None = None
    rating: float | None = Field(default=None, ge=-1e6, le=1e6)
    timestamp: float | None = Field(default=None, ge=0, le=1e11)

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
