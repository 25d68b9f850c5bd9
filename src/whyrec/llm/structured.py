"""Structured answers from the LLM: a pydantic schema, one repair attempt, or nothing.

Every structured request goes through `ask_structured`: the schema is sent in the form
the server understands (`LLMClient.chat` negotiates it), the answer is parsed and
validated with pydantic; an invalid answer is shown back to the model with the
validation error once; a second failure returns None so that the caller falls back to
the embedded engine. The trace gets each step.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from whyrec.llm.client import CallContext, LLMClient

Model = TypeVar("Model", bound=BaseModel)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
MAX_ERROR_CHARS = 600


def schema_of(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def parse(model: type[Model], content: str | None) -> Model:
    """Validate a model's answer; tolerate a Markdown code fence around the JSON, and
    words around one JSON object (servers without JSON mode)."""
    text = (content or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if not text.startswith("{") and 0 <= start < end:
        text = text[start : end + 1]
    return model.model_validate_json(text)


def _short_error(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
        text = "; ".join(parts[:6])
    else:
        text = str(exc)
    return text[:MAX_ERROR_CHARS]


def ask_structured(
    client: LLMClient,
    ctx: CallContext,
    purpose: str,
    model: type[Model],
    messages: list[dict],
    check=None,
    max_tokens: int | None = None,
    reserve: float = 0.0,
    schema: dict | None = None,
) -> tuple[Model | None, dict]:
    """(validated answer or None, a trace record). `check(answer)` may raise ValueError
    for problems a schema cannot express (an unknown id, a title outside the list);
    `max_tokens` caps an answer known to be short (else the config's limit); `reserve`
    keeps seconds of the turn for the caller's work on the answer; `schema` is sent instead
    of the model's own when the request can say more than validation checks (an enum of
    this call's ids, a catalog's fields)."""
    record: dict = {"purpose": purpose, "result": "fallback"}
    sent = (purpose, schema or schema_of(model))
    conversation = list(messages)
    for attempt in ("first", "repair"):
        result = client.chat(
            ctx, purpose, conversation, schema=sent, max_tokens=max_tokens, reserve=reserve
        )
        if result is None:
            record["result"] = "unavailable" if attempt == "first" else "repair unavailable"
            return None, record
        try:
            answer = parse(model, result.content)
            if check is not None:
                check(answer)
        except (ValidationError, ValueError) as exc:
            client.discard(result)
            problem = _short_error(exc)
            record.setdefault("invalid", []).append(problem)
            conversation = [
                *messages,
                {"role": "assistant", "content": (result.content or "")[:4000]},
                {
                    "role": "user",
                    "content": json.dumps(
                        {
                            "error": f"Your answer was not valid: {problem}",
                            "instruction": "Answer again with only JSON that follows the schema "
                            "and the rules; use only the ids and values you were given.",
                        }
                    ),
                },
            ]
            continue
        record["result"] = "ok" if attempt == "first" else "repaired"
        return answer, record
    return None, record
