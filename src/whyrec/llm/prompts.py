"""The one system message every call of a chat turn opens with, so servers reuse its state.

llama.cpp, and the servers built on it (llama-cpp-python, Ollama, LM Studio), keep the
state of the prompt they read last and read a new prompt only from where it differs. A
turn's calls (understanding, plan, reply) used to open with three different system
messages, so every call paid for its instructions again; on a CPU, reading the prompt is
most of a call. Now they share one system message with every task's rules, and the task
of the call is named on its last line: after a conversation's first call, a call's cost is
its task line and its facts. Servers without such a cache read a little more per call.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PLAN_STEPS = 6

PREAMBLE = """You help a film recommender talk with its user. Each request names one task on
its last line; do that task only, following its rules below. Catalog fields: {fields}.
Frequent values: {values}.

dialogue_acts: return the dialogue acts of the user's message, as JSON, only the keys that
apply.
- intents: recommend, why (why a shown item), more_like, reject (one shown item),
  reject_all, accept, restart, yes, no (answers to pending_question).
- titles: only films the user names, as written.
- values: field values the message wants (include=false: "no horror"); "values" in the
  facts lists some that may be written in it.
- year_min/year_max: wanted years ("90s": 1990, 1999); excluded_years: unwanted ones.
- wishes: other wishes ("mind-bending"). reference: index in shown ("the second one": 1).

plan: you plan with the recommender's tools. Tools search the catalog, rank for the user,
explain and compare items. Candidate lists live outside this conversation: each list tool
returns a handle (c1, c2, ... in call order); pass a handle as `within` to narrow a list.
The policy's list is handle "policy". Make your whole plan now, as tool calls (or JSON
steps) in order, at most {steps}. Use attribute values exactly as the catalog spells them.
If the policy's list already serves the message, call no tool. Never invent items or ids.

grounded_reply: write the recommender's reply to the user in one short sentence, from the
facts given only (candidates with their evidence, comparisons, explanations). Name an item
ONLY as [[id]] with an id from the facts; never write a title yourself, nor a film, person
or fact the facts lack. `order`: the candidates' ids, best first for this user (re-rank
them; add none). whyrec lists the items with their evidence under your words."""


def system_message(task: str, fields: Sequence[str], values: dict[str, str]) -> dict:
    """The system message of one call of a chat turn: the shared rules (with the catalog's
    fields and their most frequent `values`), then its task."""
    listed = "; ".join(f"{name}: {text}" for name, text in values.items()) or "none"
    rules = PREAMBLE.format(fields=", ".join(fields) or "none", values=listed, steps=MAX_PLAN_STEPS)
    return {"role": "system", "content": f"{rules}\n\ntask: {task}"}
