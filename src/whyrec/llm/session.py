"""The conversation with an LLM in front: same sessions, same store, same guarantees.

`LLMConversation` is a `Conversation` whose sessions let the LLM understand the message
and phrase the reply, and let it plan with the recommender's tools in between. The
embedded engine still decides everything it decides without an LLM (state updates, ask
or recommend, explanations), so each LLM step has an embedded answer to fall back on,
and the turn's trace (`Turn.trace["llm"]`, stored with the turn) says which was used.
"""

from __future__ import annotations

import time

from whyrec.conversation import replies
from whyrec.conversation.conversation import Conversation, Session, Turn
from whyrec.conversation.policy import PolicyConfig, WishScorer
from whyrec.conversation.state import DialogueState
from whyrec.conversation.store import SessionStore
from whyrec.conversation.understanding import Intent, Understanding
from whyrec.engine import Engine
from whyrec.llm.agent import Agent, DecayingMax, reorder
from whyrec.llm.client import CallContext, LLMClient, TokenBudget
from whyrec.llm.config import LLMConfig
from whyrec.llm.understanding import LLMUnderstander, merge_profile

_NO_AGENT = {Intent.RESTART, Intent.ACCEPT}
OWN_WORK_SHARE = 0.05
"""Part of the budget kept free for whyrec's own work before any turn has measured it (a
first turn also loads what later turns reuse)."""


class LLMConversation(Conversation):
    """A `Conversation` with an OpenAI-compatible LLM as its voice and planner."""

    def __init__(
        self,
        engine: Engine,
        config: LLMConfig,
        store: SessionStore | None = None,
        policy: PolicyConfig | None = None,
        wish_scorer: WishScorer | str | None = "auto",
        seed: int = 0,
        client: LLMClient | None = None,
    ) -> None:
        super().__init__(engine, store=store, policy=policy, wish_scorer=wish_scorer, seed=seed)
        self.llm_config = config
        self.client = client or LLMClient(config)
        self.llm_understander = LLMUnderstander(self.client, self.understander)
        self.agent = Agent(self.client, self.catalog, self.config.rec_size)
        self.own_work = DecayingMax(OWN_WORK_SHARE * config.timeout)
        self.tail_work = DecayingMax()


class LLMSession(Session):
    """One dialogue; each `send` is a turn with at most `timeout` seconds of LLM time."""

    conversation: LLMConversation

    def send(self, text: str) -> Turn:
        """A turn that ends within the LLM budget: its time counts from its very start,
        and the calls leave free the time whyrec's own work took in recent turns (on a
        loaded machine that is seconds, not milliseconds)."""
        conv = self.conversation
        config = conv.llm_config
        self._started = time.monotonic()
        self._ctx = CallContext.for_turn(
            config,
            TokenBudget(config.token_budget, used=self.state.llm_tokens),
            own_work=conv.own_work.seconds,
            tail=conv.tail_work.seconds,
        )
        turn = super().send(text)
        ended = time.monotonic()
        conv.own_work.took(ended - self._started - self._ctx.waited)
        if self._ctx.answered is not None:
            conv.tail_work.took(ended - self._ctx.answered)
        return turn

    def _understand(self, text: str) -> Understanding:
        conv = self.conversation
        self._trace: dict = {}
        pending = self.state.pending.text if self.state.pending else None
        said, record = conv.llm_understander.understand(
            self._ctx, text, list(self.state.shown), pending, self.state.memory
        )
        self._trace["understanding"] = record
        return said

    def _finish(self, state: DialogueState, said: Understanding, text: str, turn: Turn) -> Turn:
        conv = self.conversation
        state.memory = merge_profile(state.memory, said, conv.catalog)
        fallbacks = []
        if self._trace["understanding"].get("source") != "llm":
            fallbacks.append("understanding")
        # a list that carries a follow-up question is still a list the LLM may plan and phrase
        if (turn.question is None or turn.items) and not (_NO_AGENT & set(said.intents)):
            turn = self._agent_turn(state, said, text, turn, fallbacks)
        ctx = self._ctx
        state.llm_tokens = ctx.budget.used
        self._trace.update(
            calls=ctx.calls,
            llm_calls=sum(1 for c in ctx.calls if c["outcome"] not in ("skipped", "cached")),
            tokens=ctx.tokens,
            session_tokens=ctx.budget.used,
            fallbacks=fallbacks,
            dialect=conv.client.dialect.to_dict(),
            seconds=round(time.monotonic() - self._started, 3),
            own_work_kept=round(ctx.own_work, 3),
            tail_kept=round(ctx.tail, 3),
        )
        turn.trace = {"llm": self._trace}
        return turn

    def _agent_turn(
        self, state: DialogueState, said: Understanding, text: str, turn: Turn, fallbacks: list
    ) -> Turn:
        conv = self.conversation
        catalog = conv.catalog
        items = list(turn.items)
        explaining = Intent.WHY in said.intents
        facts: list[dict] = []
        if not explaining:
            policy_items = [catalog.position(i["item_id"]) for i in items]
            outcome = conv.agent.plan_and_execute(self._ctx, self, state, text, policy_items)
            self._trace["plan"] = outcome.trace
            facts = outcome.facts
            if outcome.items is not None and outcome.items != policy_items:
                started = time.monotonic()
                items = self.describe_items(state, outcome.items)
                conv.agent.work.describe.took(time.monotonic() - started)
                constraints = replies.describe_constraints(
                    state.include, state.exclude, state.year_min, state.year_max
                )
                first = not state.shown and not state.rejected
                # the follow-up question was about the policy's list, not this one
                turn = Turn(
                    replies.recommendation_text(catalog, items, constraints, first), items=items
                )
                state.shown, state.focus, state.pending = list(outcome.items), None, None
                state.listed(with_question=False)
        if not (items or facts):
            return turn
        permitted = self._permitted(state, said, items, facts)
        reply, order, record = conv.agent.reply(self._ctx, state, text, items, facts, permitted)
        self._trace["reply"] = record
        if not reply:
            fallbacks.append("reply")
            return turn
        lines = [reply]
        if items and not explaining:
            turn.items = reorder(items, order)
            state.shown = [catalog.position(i["item_id"]) for i in turn.items]
            lines += replies.item_lines(turn.items)
        turn.reply = "\n".join([*lines, turn.question] if turn.question else lines)
        return turn

    def _permitted(
        self, state: DialogueState, said: Understanding, items: list[dict], facts: list[dict]
    ) -> set[int]:
        """Items a reply may name: the candidates, their cited evidence, what the user
        has talked about or liked, and the items of comparisons and explanations."""
        catalog = self.conversation.catalog
        ids = [i["item_id"] for i in items]
        ids += [c["item_id"] for i in items for c in i["explanation"].get("history", [])]
        for fact in facts:
            ids += [fact["item_id"]] if "item_id" in fact else []
            ids += [i["item_id"] for i in fact.get("items", [])]
            ids += fact.get("cited", [])
        permitted = {catalog.position(i) for i in ids if catalog.has(i)}
        permitted |= set(state.shown) | set(state.profile()) | set(state.disliked)
        permitted |= {m.position for m in said.mentions}
        return permitted


LLMConversation.session_class = LLMSession


def open_conversation(
    engine: Engine,
    store: SessionStore | None = None,
    llm: LLMConfig | None = None,
    **options,
) -> Conversation:
    """The conversation to serve: with the LLM when `llm` is configured, else embedded.

    The one entry point for the CLI, the HTTP API and the simulator, so all of them
    read the same configuration the same way (`load_llm_config`).
    """
    if llm is not None and llm.configured:
        return LLMConversation(engine, llm, store=store, **options)
    return Conversation(engine, store=store, **options)
