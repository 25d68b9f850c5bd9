"""Plan, execute, reflect (InteRecAgent), then a grounded reply (Chat-Rec).

The planner sees the message, the profile, the dialogue's constraints and the policy's
list (by handle), and answers with tool calls: its whole plan at once. whyrec executes
the plan with no LLM in the loop. When the final list is empty, or holds items the user
ruled out, the observations go back to the LLM once for a revised plan (reflection);
if that fails too, the list keeps only what the user allows, or the policy's list wins.

The reply is written by the LLM from facts whyrec gives it: the candidates with their
Explanation evidence. It may re-rank them and must name items only as [[item_id]]; the
`ReplyGuard` checks every name. A broken reply gets one repair; then the embedded reply
is shown.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from whyrec.conversation.replies import describe_constraints
from whyrec.conversation.state import DialogueState
from whyrec.llm.client import CallContext, LLMClient
from whyrec.llm.guard import ReplyGuard
from whyrec.llm.prompts import MAX_PLAN_STEPS, system_message
from whyrec.llm.structured import ask_structured, schema_of
from whyrec.llm.tools import LIST_TOOLS, TOOLS, CandidateMemory, Toolbox, tool_specs
from whyrec.llm.understanding import Vocabulary

REPLY_ITEMS = 3
"""Candidates described to the reply (the head of the list; the rest keep their place):
one sentence names two or three, and a small local model on a CPU reads each
candidate's evidence at a second or more."""
REPLY_MAX_TOKENS = 120
"""Completion cap of a reply: a sentence and an order (a typical one is 40-70 tokens; an
answer cut off by the cap is no JSON, so the cap stays well above it)."""
EVIDENCE_TITLES, EVIDENCE_VALUES = 2, 3
"""Cited history items and shared attribute values given per candidate."""


def _step_model(name: str, arguments: type[BaseModel]) -> type[BaseModel]:
    """One step of a JSON plan: the tool's name and its typed arguments."""
    return create_model(
        f"{arguments.__name__}Step",
        __config__=ConfigDict(extra="forbid"),
        tool=(Literal[name], ...),
        arguments=(arguments, ...),
    )


PlanStep = Annotated[
    Union[tuple(_step_model(name, model) for name, model in TOOLS.items())],  # noqa: UP007
    Field(discriminator="tool"),
]


class Plan(BaseModel):
    """A plan as JSON, for servers without tool calling: the schema spells out every
    tool's arguments, so a grammar-constrained server can only write valid calls."""

    model_config = ConfigDict(extra="forbid")
    steps: list[PlanStep] = Field(default_factory=list, max_length=MAX_PLAN_STEPS)


class GroundedReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order: list[str] = Field(default_factory=list, max_length=50)
    text: str = Field(min_length=1, max_length=4000)


@dataclass
class DecayingMax:
    """The longest recent duration of some work, slowly forgotten (a tenth per sample):
    what to keep free for it, on a machine whose speed changes."""

    seconds: float = 0.0
    DECAY = 0.9

    def took(self, seconds: float) -> None:
        self.seconds = max(seconds, self.seconds * self.DECAY)


@dataclass
class WorkTimes:
    """How long whyrec's own work on a plan takes here (one step; describing a new list):
    a plan is asked early enough for its execution to end within the turn, and a step
    only starts when it can."""

    step: DecayingMax = field(default_factory=DecayingMax)
    describe: DecayingMax = field(default_factory=DecayingMax)

    def reserve(self) -> float:
        """Seconds kept after a plan's answer: a typical plan's steps and the new list."""
        return TYPICAL_PLAN_STEPS * self.step.seconds + self.describe.seconds


TYPICAL_PLAN_STEPS = 2


@dataclass
class AgentOutcome:
    items: list[int] | None = None
    """The list to show instead of the policy's, or None to keep the policy's."""
    facts: list[dict] = field(default_factory=list)
    trace: dict = field(default_factory=dict)


def _state_summary(state: DialogueState) -> str:
    return describe_constraints(state.include, state.exclude, state.year_min, state.year_max)


class Agent:
    """The LLM's use of the recommender's tools, and its replies, for one conversation."""

    def __init__(self, client: LLMClient, catalog, rec_size: int) -> None:
        self.client = client
        self.catalog = catalog
        self.rec_size = rec_size
        self.guard = ReplyGuard(catalog)
        self.work = WorkTimes()
        self._values = Vocabulary(catalog).common()

    # ----- planning ------------------------------------------------------------------
    def plan_and_execute(
        self, ctx: CallContext, session, state: DialogueState, text: str, policy_items: list[int]
    ) -> AgentOutcome:
        memory = CandidateMemory()
        memory.lists["policy"] = list(policy_items)
        toolbox = Toolbox(session, state, memory)
        facts_in = {
            "message": text,
            "profile": state.memory,
            "constraints": _state_summary(state),
            "shown": toolbox.preview(state.shown) if state.shown else [],
            "policy": {"handle": "policy", "count": len(policy_items)}
            | {"top": toolbox.preview(policy_items)},
            "fields": self.catalog.fields,
        }
        messages = [
            system_message("plan", self.catalog.fields, self._values),
            {"role": "user", "content": json.dumps(facts_in, ensure_ascii=False)},
        ]
        trace: dict = {"steps": []}
        no_time = self._no_time_to_plan(ctx)
        if no_time:
            return AgentOutcome(trace=trace | {"result": "not asked", "not_asked": no_time})
        calls = self._ask_plan(ctx, messages, trace)
        if calls is None:
            return AgentOutcome(trace=trace | {"result": "no plan (LLM unavailable or invalid)"})
        observations = self._execute(ctx, toolbox, calls, trace)
        if trace.get("cut"):
            return _cut(trace)
        items, problem = self._final_list(toolbox, state)
        if problem and any(name in LIST_TOOLS for _, name, _ in calls):
            trace["reflection"] = problem
            native = trace.get("tools") == "native"
            messages += self._observation_messages(calls, observations, native)
            messages.append(
                {
                    "role": "user",
                    "content": json.dumps(
                        {
                            "problem": problem,
                            "instruction": "Revise the plan with "
                            + ("tool calls." if native else "a new JSON plan."),
                        }
                    ),
                }
            )
            revised = self._ask_plan(ctx, messages, trace)
            if revised:
                self._execute(ctx, toolbox, revised, trace)
                if trace.get("cut"):
                    return _cut(trace)
                items, problem = self._final_list(toolbox, state)
        outcome = AgentOutcome(facts=memory.facts, trace=trace)
        trace["memory"] = memory.summary()
        if items:
            outcome.items = items
            trace["result"] = f"list {memory.order[-1]}" + (f" ({problem})" if problem else "")
        else:
            trace["result"] = "policy list kept" + (f": {problem}" if problem else "")
        return outcome

    def _ask_plan(
        self, ctx: CallContext, messages: list[dict], trace: dict
    ) -> list[tuple[str, str, str]] | None:
        """[(call id, tool, arguments JSON)] or None when no usable plan came back."""
        mode = self.client.tool_mode(ctx)
        trace["tools"] = mode
        if mode is None:
            return None
        reserve = self.work.reserve()
        if mode == "native":
            result = self.client.chat(
                ctx, "plan", messages, tools=tool_specs(), tool_choice="auto", reserve=reserve
            )
            if result is None:
                return None
            return [(c.id, c.name, c.arguments) for c in result.tool_calls][:MAX_PLAN_STEPS]
        plan, record = ask_structured(self.client, ctx, "plan", Plan, messages, reserve=reserve)
        trace.setdefault("structured", []).append(record)
        if plan is None:
            return None
        return [
            (f"step{i}", step.tool, step.arguments.model_dump_json(exclude_unset=True))
            for i, step in enumerate(plan.steps)
        ]

    def _no_time_to_plan(self, ctx: CallContext) -> str | None:
        """Why the plan is not asked this turn: the server's measured speed leaves no time
        for a plan, its execution and the reply after it. The reply (the words the user
        reads, and the LLM's order of the list) is then asked alone."""
        plan = self.client.estimate("plan")
        if plan is None:
            return None
        reply = self.client.estimate("grounded_reply", max_tokens=REPLY_MAX_TOKENS) or 0.0
        needed = plan + self.work.reserve() + reply
        if needed <= ctx.remaining:
            return None
        return (
            f"plan and reply would take about {needed:.1f} s, {max(ctx.remaining, 0):.1f} s "
            "left: the reply is asked alone"
        )

    def _execute(
        self, ctx: CallContext, toolbox: Toolbox, calls: list[tuple[str, str, str]], trace: dict
    ) -> list[dict]:
        """Run the plan's steps while the turn has time for them (a step takes about as
        long as the slowest one lately); `trace["cut"]` says when it had not."""
        observations = []
        for done, (_, name, arguments) in enumerate(calls):
            if ctx.remaining < self.work.step.seconds:
                trace["cut"] = f"out of time after {done} of {len(calls)} steps"
                break
            started = time.monotonic()
            observation = toolbox.run(name, arguments)
            self.work.step.took(time.monotonic() - started)
            observations.append(observation)
            step = {"tool": name, "arguments": arguments[:500]}
            step |= {k: observation[k] for k in ("handle", "count", "error") if k in observation}
            trace["steps"].append(step)
        return observations

    @staticmethod
    def _observation_messages(
        calls: list[tuple[str, str, str]], observations: list, native: bool
    ) -> list:
        """The plan and its results in the chat format: an assistant message with the tool
        calls, then one tool message per call; as JSON text for a server without tools."""
        if not native:
            steps = [{"tool": n, "arguments": json.loads(a or "{}")} for _, n, a in calls]
            return [
                {"role": "assistant", "content": json.dumps({"steps": steps})},
                {"role": "user", "content": json.dumps({"observations": observations})[:6000]},
            ]
        return [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": cid, "type": "function", "function": {"name": n, "arguments": a}}
                    for cid, n, a in calls
                ],
            },
            *(
                {"role": "tool", "tool_call_id": cid, "content": json.dumps(obs)[:3000]}
                for (cid, _, _), obs in zip(calls, observations, strict=True)
            ),
        ]

    def _final_list(self, toolbox: Toolbox, state: DialogueState) -> tuple[list[int], str | None]:
        """The last list a tool wrote, trimmed to what the user allows; and the problem."""
        memory = toolbox.memory
        if not memory.order:
            return [], None
        handle = memory.order[-1]
        items = memory.lists[handle]
        if not items:
            return [], f"list {handle} is empty"
        allowed = toolbox.conversation.scorer.allowed(state)
        kept = [p for p in items if allowed[p]]
        ruled_out = [self.catalog.item_ids[p] for p in items[: self.rec_size] if not allowed[p]]
        kept = kept[: self.rec_size]
        if ruled_out:
            return kept, (
                f"list {handle} holds items the user ruled out ({_state_summary(state)} or "
                f"already seen/rejected): {', '.join(ruled_out[:5])}"
            )
        if not kept:
            return [], f"list {handle} has nothing the user allows"
        return kept, None

    # ----- replying -----------------------------------------------------------------------
    def reply(
        self,
        ctx: CallContext,
        state: DialogueState,
        text: str,
        items: list[dict],
        facts: list[dict],
        permitted: set[int],
    ) -> tuple[str, list[str] | None, dict]:
        """(reply text, ids best first or None, trace); an empty text means "use embedded"."""
        candidates = [_evidence(item) for item in items[:REPLY_ITEMS]]
        given = {c["item_id"] for c in candidates}
        facts_out = {
            "message": text,
            "profile": state.memory,
            "constraints": _state_summary(state),
            "candidates": candidates,
            "facts": facts,
        }
        messages = [
            system_message("grounded_reply", self.catalog.fields, self._values),
            {"role": "user", "content": json.dumps(facts_out, ensure_ascii=False)},
        ]
        guarded: dict = {}

        def check(answer: GroundedReply) -> None:
            unknown = [i for i in answer.order if i not in given]
            if unknown:
                raise ValueError(f"order holds ids that are not candidates: {unknown[:5]}")
            if len(set(answer.order)) != len(answer.order):
                raise ValueError("order repeats an id")
            result = self.guard.check(answer.text, permitted)
            if not result.ok:
                raise ValueError("; ".join(result.problems[:5]))
            guarded["text"] = result.text

        answer, record = ask_structured(
            self.client,
            ctx,
            "grounded_reply",
            GroundedReply,
            messages,
            check,
            max_tokens=min(REPLY_MAX_TOKENS, self.client.config.max_tokens),
            schema=reply_schema([c["item_id"] for c in candidates]),
        )
        if answer is None:
            return "", None, record
        return guarded["text"], answer.order, record


def reply_schema(ids: list[str]) -> dict:
    """The reply's schema as sent: `order` holds only this call's candidate ids, at most
    as many as there are (a grammar-constrained server writes no other id and stops after
    the last); the checks and the guard still see every answer, from any server."""
    schema = schema_of(GroundedReply)
    order = schema["properties"]["order"]
    order["maxItems"] = len(ids)
    if ids:
        order["items"] = {"type": "string", "enum": list(ids)}
    return schema


def _cut(trace: dict) -> AgentOutcome:
    """A plan whose steps did not all run in time: its facts and lists are not used."""
    return AgentOutcome(trace=trace | {"result": "policy list kept: " + trace["cut"]})


def _evidence(item: dict) -> dict:
    """One candidate for the reply, briefly: its id and year, the history items it is
    recommended for and the attribute values it shares with them (the explanation's
    data; its full text stays for the list under the reply)."""
    explanation = item["explanation"]
    return {
        "item_id": item["item_id"],
        "year": item.get("year"),
        "because_you_liked": [c["title"] for c in explanation.get("history", [])][:EVIDENCE_TITLES],
        "shares": [v["value"] for v in explanation.get("shared_values", [])][:EVIDENCE_VALUES],
    }


def reorder(items: list[dict], order: list[str] | None) -> list[dict]:
    """Items in the LLM's order (ranks renumbered); ids it left out keep their place after
    the others."""
    if not order:
        return items
    rank = {item_id: i for i, item_id in enumerate(order)}
    ordered = sorted(items, key=lambda item: rank.get(item["item_id"], len(rank)))
    return [{**item, "rank": number} for number, item in enumerate(ordered, 1)]
