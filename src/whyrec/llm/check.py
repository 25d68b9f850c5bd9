"""`whyrec llm check`: what the configured server understands, and what whyrec will use.

The check asks the server the questions a conversation would otherwise ask it lazily:
is it there (`GET /models`), what its own description declares (`/openapi.json`, where
published), which way of asking for JSON works (each form of `STRUCTURED_FORMS` the
description allows, richest first, with a tiny schema), and whether tool calls come
back. The answers become the server's `Dialect`, shared with every client of this
process, and a report that says what to change when nothing works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from whyrec.llm.client import (
    STRUCTURED_FORMS,
    CallContext,
    LLMClient,
    TokenBudget,
    classify_error,
)
from whyrec.llm.config import LLMConfig
from whyrec.llm.structured import parse

PROBE_MAX_TOKENS = 32


class SumAnswer(BaseModel):
    """The test call's answer: a sum, so the JSON is checkable and short."""

    model_config = ConfigDict(extra="forbid")
    sum: int


TEST_MESSAGES = [
    {"role": "system", "content": "task: probe_json\nYou add numbers and answer in JSON."},
    {"role": "user", "content": 'What is 2 + 3? Answer like {"sum": 0}.'},
]


@dataclass
class CheckReport:
    """What the check found; `problem` and `advice` are set when whyrec cannot use it."""

    endpoint: str
    model: str
    served_models: list[str] | None = None
    described: str | None = None
    """What the server's description declares ("none" when it publishes none)."""
    forms: dict[str, str] = field(default_factory=dict)
    """Structured-output form → "works", "invalid JSON", "rejected (500)", ..."""
    tools: str | None = None
    structured: str | None = None
    latency: float | None = None
    tokens: int | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    advice: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "served_models": self.served_models,
            "described": self.described,
            "structured_output": self.forms,
            "dialect": {"structured": self.structured, "tools": self.tools},
            "test_call": {"seconds": self.latency, "tokens": self.tokens},
            "notes": self.notes,
            "ok": self.ok,
            "problem": self.problem,
            "advice": self.advice,
        }


def _unreachable(report: CheckReport, outcome: str, status: int | None) -> CheckReport:
    where = f"{report.endpoint}"
    if status in (401, 403):
        report.problem = f"the server at {where} refused the API key ({status})"
        report.advice = "set WHYREC_LLM_API_KEY (or --llm-api-key) to a key it accepts"
    elif outcome == "timeout":
        report.problem = f"the server at {where} did not answer in time"
        report.advice = "raise --llm-timeout / WHYREC_LLM_TIMEOUT, or check the server's load"
    else:
        report.problem = f"cannot reach an OpenAI-compatible server at {where} ({outcome})"
        report.advice = (
            "start the server, or point --llm-base-url / WHYREC_LLM_BASE_URL at it "
            "(the URL ends in /v1)"
        )
    return report


def check_server(config: LLMConfig, client: LLMClient | None = None) -> CheckReport:
    """Probe the configured server; the dialect found is stored for this process."""
    client = client or LLMClient(config)
    report = CheckReport(config.endpoint, config.model or "(server default)")
    try:
        listed = client._openai.models.list(timeout=config.timeout)
        report.served_models = [m.id for m in listed.data]
    except Exception as exc:  # the SDK's errors: unreachable, refused key, no /models
        outcome, status, _ = classify_error(exc)
        if outcome in ("timeout", "connection") or status in (401, 403):
            return _unreachable(report, outcome, status)
        report.notes.append(f"GET /models answered {outcome} ({status}); trying a chat call")
    if report.served_models and config.model and config.model not in report.served_models:
        report.notes.append(
            f"model {config.model!r} is not among the served models "
            f"({', '.join(report.served_models[:5])}); the server may answer with another one"
        )
    budget = TokenBudget(config.token_budget)
    dialect = client.describe(CallContext.for_turn(config, budget))
    report.described = dialect.described
    forms = STRUCTURED_FORMS
    if dialect.fixed_structured:
        forms = (dialect.structured,)
    elif dialect.described not in (None, "none"):
        first = STRUCTURED_FORMS.index(dialect.structured)
        for form in STRUCTURED_FORMS[:first]:
            report.forms[form] = "not offered by the server's description"
        forms = STRUCTURED_FORMS[first:]
    working: str | None = None
    accepted: str | None = None
    for form in forms:
        ctx = CallContext.for_turn(config, budget)
        started = time.monotonic()
        result = client.chat(
            ctx,
            "probe_json",
            TEST_MESSAGES,
            schema=("probe_json", SumAnswer.model_json_schema()),
            max_tokens=PROBE_MAX_TOKENS,
            form=form,
        )
        seconds = time.monotonic() - started
        record = ctx.calls[-1]
        if result is None:
            errors = record.get("errors") or [record.get("outcome", "failed")]
            report.forms[form] = f"failed: {errors[-1]}"
            if record.get("outcome") in ("timeout", "out_of_time", "connection"):
                late = record["outcome"] != "connection"
                return _unreachable(report, "timeout" if late else "connection", None)
            continue
        try:
            parse(SumAnswer, result.content)
            report.forms[form] = "works"
        except (ValidationError, ValueError):
            report.forms[form] = (
                f"answered, not the JSON asked for: {(result.content or '')[:60]!r}"
            )
            accepted = accepted or form
            continue
        working = form
        report.latency, report.tokens = round(seconds, 3), result.tokens
        break
    chosen = working or accepted
    if chosen is None:
        report.problem = "the server rejected every way of asking for JSON: " + "; ".join(
            f"{form} {verdict}" for form, verdict in report.forms.items()
        )
        report.advice = (
            "check that --llm-model names a chat model the server serves, and read the "
            "server's log for the rejected request"
        )
        return report
    client.learn_structured(chosen, [f"checked: {form} {v}" for form, v in report.forms.items()])
    report.structured = chosen
    if working is None:
        report.notes.append(
            "the model answered but never with the JSON asked for: whyrec will repair once "
            "per answer and otherwise use its embedded engine; a larger model would help"
        )
    report.tools = client.tool_mode(CallContext.for_turn(config, budget))
    if report.tools is None:
        report.notes.append("the tool-call question got no answer in time; asked again later")
    report.notes.extend(n for n in dialect.notes if n not in report.notes)
    return report
