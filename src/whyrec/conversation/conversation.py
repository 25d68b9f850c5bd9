"""A conversation: understand the message, update the state, ask or recommend, explain.

`Conversation` holds what is shared (engine, understanding, policy, store); a `Session`
is one user's dialogue. Every item the system mentions comes from the catalog by
position, so it can never name an item that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import whyrec.conversation.replies as replies
from whyrec.conversation.directions import (
    NUMERIC_KINDS,
    ItemMeasures,
    critique_bound,
    describe_numeric_shift,
    describe_shift,
)
from whyrec.conversation.fields import AttributeSpace
from whyrec.conversation.lexicon import LEXICON_FILE, load_lexicon
from whyrec.conversation.policy import Action, CandidateScorer, Policy, PolicyConfig, WishScorer
from whyrec.conversation.state import DialogueState, Question
from whyrec.conversation.understanding import Intent, Understander, Understanding
from whyrec.core import ItemList, Query
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.explain.render import describe_values
from whyrec.store import FeedbackEvent, SQLiteStore, Store
from whyrec.text.wishes import SemanticWishes, encoder_available

REASON_TITLES = 2


@dataclass
class Turn:
    """What the system answers to one message."""

    reply: str
    items: list[dict] = field(default_factory=list)
    question: str | None = None
    state: dict = field(default_factory=dict)
    understanding: dict = field(default_factory=dict)
    trace: dict = field(default_factory=dict)
    """What happened behind the reply (LLM calls, fallbacks); empty on the embedded path."""

    def to_dict(self) -> dict:
        data = {
            "reply": self.reply,
            "items": self.items,
            "question": self.question,
            "state": self.state,
        }
        if self.trace:
            data["trace"] = self.trace
        return data


class Conversation:
    """Shared machinery for many sessions over one bundle."""

    session_class: type[Session]

    def __init__(
        self,
        engine: Engine,
        store: Store | None = None,
        policy: PolicyConfig | None = None,
        wish_scorer: WishScorer | str | None = "auto",
        seed: int = 0,
    ) -> None:
        """`wish_scorer="auto"` matches free-text wishes with the shipped sentence encoder
        when it is installed; None ignores such wishes."""
        self.engine = engine
        self.catalog = engine.catalog
        self.store = store or SQLiteStore()
        self.config = policy or PolicyConfig.from_bundle(engine.bundle.info)
        bundle = engine.bundle
        lexicon = load_lexicon(
            bundle.train.name, bundle.path / LEXICON_FILE if bundle.path is not None else None
        )
        self.space = AttributeSpace(self.catalog)
        self.understander = Understander(
            self.catalog, engine.popularity, extra_synonyms=self.space.synonyms(), lexicon=lexicon
        )
        if wish_scorer == "auto":
            wish_scorer = (
                SemanticWishes(self.catalog, getattr(engine.model, "score_query", None))
                if encoder_available()
                else None
            )
        self.measures = ItemMeasures(bundle.train, wish_scorer)
        self.scorer = CandidateScorer(
            engine, self.config, wish_scorer, self.measures, space=self.space
        )
        self.policy = Policy(self.scorer, self.config)
        self.seed = seed

    def warm_up(self) -> None:
        """Build what a first turn would otherwise pay for: the sentence encoder and the
        catalog's vectors (the first free-text wish), the critique directions and quality
        measures, and the explainer. A service calls this before taking requests."""
        wishes = self.scorer.wish_scorer
        if wishes is not None:
            wishes([("anything", True)])
        self.measures.warm()
        self.engine.explainer  # noqa: B018 (built on first use)
        self._scratch_turns()

    def _scratch_turns(self) -> None:
        """A request in the catalog's own words and a "why?", in a session kept in memory
        and on the embedded path (no LLM call, nothing in the real store): what is left
        to build lazily is built by the code a first real turn runs."""
        real = self.store
        self.store = SQLiteStore(":memory:")
        try:
            state = DialogueState()
            session_id, token = self.store.create(state.to_dict(), None)
            session = Session(self, session_id, token, state)
            session.send(self.example_request())
            session.send("why the first one?")
        finally:
            self.store.close()
            self.store = real

    def greeting(self) -> str:
        """The first words of a chat page, in this catalog's terms."""
        return (
            "Hi! Tell me a title you like or what it should be like, e.g. "
            f"'{self.example_request()}'. Press “why?” on any suggestion to see the reasons."
        )

    def example_request(self) -> str:
        """A request worded from this catalog: one of its most common attribute values, or
        a title when it has no attributes."""
        named = [c for c in self.space.columns if c.kind != "range"]
        if named:
            return f"something {named[0].words}"
        return f"more like {self.catalog.titles[0]}" if len(self.catalog) else "anything"

    def start(self, user_id: str | None = None) -> Session:
        history = [int(p) for p in self.engine.user_history(user_id)] if user_id else []
        state = DialogueState(user_id=user_id, history=history)
        state.record_catalog(self.catalog.fingerprint, self.catalog.item_ids)
        session_id, token = self.store.create(state.to_dict(), user_id)
        return self.session_class(self, session_id, token, state)

    def resume(self, session_id: str) -> Session:
        """The session as stored; its token is not (the store keeps only a digest).

        A session made under another catalog (the bundle was retrained) is remapped by
        item id when every item it refers to still exists, else refused in one line."""
        state = DialogueState.from_dict(self.store.load(session_id))
        self._adopt(state, session_id)
        return self.session_class(self, session_id, None, state)

    def _adopt(self, state: DialogueState, session_id: str) -> None:
        catalog = self.catalog
        if state.catalog_fingerprint == catalog.fingerprint:
            return
        if state.catalog_fingerprint is None:  # stored before sessions recorded it
            if all(0 <= p < len(catalog) for p in state.positions()):
                return
            raise WhyrecError(
                f"session {session_id} refers to items this bundle's catalog does not hold; "
                "start a new session"
            )
        old_ids = {int(p): item_id for p, item_id in state.item_ids.items()}
        missing = sorted(
            old_ids.get(p, f"position {p}")
            for p in state.positions()
            if p not in old_ids or not catalog.has(old_ids[p])
        )
        if missing:
            raise WhyrecError(
                f"session {session_id} was made with another catalog and {len(missing)} of "
                f"its items are not in this bundle (e.g. {missing[0]!r}); start a new session"
            )
        state.remap({p: catalog.position(old_ids[p]) for p in state.positions()})
        state.record_catalog(catalog.fingerprint, catalog.item_ids)


class Session:
    """One user's dialogue; `send` is a turn."""

    def __init__(
        self,
        conversation: Conversation,
        session_id: str,
        token: str | None,
        state: DialogueState,
    ) -> None:
        self.conversation = conversation
        self.id = session_id
        self.token = token
        self.state = state

    # ----- the turn ---------------------------------------------------------------------
    def send(self, text: str) -> Turn:
        if not isinstance(text, str):
            raise WhyrecError("a message must be text")
        understanding = self._understand(text)
        working = DialogueState.from_dict(self.state.to_dict())  # changes land only on success
        working.turn += 1
        turn = self._respond(working, understanding, text)
        turn = self._finish(working, understanding, text, turn)
        turn.understanding = understanding.to_dict()
        return self._commit(working, turn, text, understanding.to_dict())

    def react(self, position: int, liked: bool) -> Turn:
        """A like or dislike button pressed on an item: a turn without words.

        A like adds the item to the taste profile and shows more like it; a dislike
        rejects it and lets the policy ask or recommend again, as after "not that one".
        The reaction is also stored as a feedback event, in the same transaction.
        """
        catalog = self.conversation.catalog
        if not 0 <= int(position) < len(catalog):
            raise WhyrecError(f"no item at catalog position {position}")
        position = int(position)
        title = catalog.titles[position]
        working = DialogueState.from_dict(self.state.to_dict())
        working.turn += 1
        if liked:
            working.like(position)
            turn = self._act(working, f"Noted: you like {title}.", force_recommend=True)
        else:
            working.dislike(position)
            working.reject(position)
            turn = self._act(working, f"Noted: {title} is not for you.", force_recommend=False)
        said = f"{'I like' if liked else 'Not for me:'} {title}"
        reaction = {"reaction": {"item_id": catalog.item_ids[position], "liked": liked}}
        event = FeedbackEvent(
            item_id=catalog.item_ids[position],
            kind="like" if liked else "dislike",
            user_id=working.user_id,
            session_id=self.id,
        )
        return self._commit(working, turn, said, reaction, [event])

    def _commit(
        self,
        working: DialogueState,
        turn: Turn,
        said: str,
        said_payload: dict,
        feedback: list[FeedbackEvent] | None = None,
    ) -> Turn:
        """Store the turn (state, both messages, feedback) at once, then adopt the state."""
        catalog = self.conversation.catalog
        working.record_catalog(catalog.fingerprint, catalog.item_ids)
        turn.state = working.to_dict()
        self.conversation.store.save_turn(
            self.id,
            turn.state,
            working.turn,
            [("user", said, said_payload), ("assistant", turn.reply, turn.to_dict())],
            feedback or (),
        )
        self.state = working
        return turn

    def _understand(self, text: str) -> Understanding:
        """The message as dialogue acts (the LLM layer overrides this)."""
        return self.conversation.understander.understand(text, shown=self.state.shown)

    def _finish(self, state: DialogueState, said: Understanding, text: str, turn: Turn) -> Turn:
        """A last look at the decided turn before it is stored (the LLM layer phrases it)."""
        return turn

    def _respond(self, state: DialogueState, said: Understanding, text: str) -> Turn:
        prefix = " ".join(f"({note})" for note in said.notes)
        if not text.strip() or (said.is_empty and state.pending is None):
            return Turn(
                self._with(
                    prefix,
                    "I didn't catch that. Tell me a title you like or what it should be "
                    f"like, e.g. '{self.conversation.example_request()}'.",
                )
            )
        intents = set(said.intents)
        if Intent.RESTART in intents:
            state.restart()
            return Turn("Starting over. What are you looking for?")
        if Intent.WHY in intents:
            return self._explain_turn(state, said)
        answered = self._apply_answer(state, said)
        if not answered and self._asks_for_other_items(state, said):
            said.intents.append(Intent.REJECT_ALL)
        intents = set(said.intents)
        self._apply_references(state, said)
        self._apply_statements(state, said)
        if Intent.ACCEPT in intents and not (said.mentions or said.constraints):
            chosen = self._referenced(state, said)
            if chosen is not None:
                state.accepted.append(chosen)
                title = self.conversation.catalog.titles[chosen]
                return Turn(f"Great choice: enjoy {title}! Ask me any time for more.")
        if said.contradictions:
            what = said.contradictions[0]
            state.pending = Question(
                "contradiction",
                text=replies.contradiction_text(what),
                field=what.partition("=")[0],
                value=what.partition("=")[2],
            )
            return self._ask_turn(state, state.pending.text, prefix)
        if said.uncertain:
            mention = said.uncertain[0]
            state.pending = Question(
                "confirm_title",
                position=mention.position,
                text=replies.confirm_title_text(mention.title),
            )
            return self._ask_turn(state, state.pending.text, prefix)
        notes = [prefix] if prefix else []
        for raw, suggestions in said.unknown_titles:
            hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
            notes.append(f"I don't know a title called '{raw}'.{hint}")
        if said.unknown_titles and not (said.mentions or said.constraints or answered):
            return Turn(" ".join(notes))
        if said.missing_facets:
            notes.append(replies.missing_facets_text(self.conversation.catalog, said))
            if not self._has_request(state):
                notes.append(replies.offer_text(self.conversation.catalog))
                return Turn(" ".join(n for n in notes if n))
        # A rejection leaves the ask-or-recommend choice to the policy (as in EAR/CPR);
        # naming a film, asking for more like one, a critique, a superlative or a facet
        # the catalog lacks (never answered by an unrelated question) want results now.
        force = (
            Intent.MORE_LIKE in intents
            or bool(said.critiques or said.superlative or said.missing_facets)
            or (Intent.RECOMMEND in intents and bool(said.mentions) and not answered)
        )
        before = list(state.shown)
        turn = self._act(state, " ".join(n for n in notes if n), force_recommend=force)
        if said.critiques and turn.items and before:
            turn.reply = self._with(self._moved_text(said, before, state.shown), turn.reply)
        return turn

    @staticmethod
    def _has_request(state: DialogueState) -> bool:
        from whyrec.conversation.policy import is_specific

        return is_specific(state)

    def _moved_text(self, said: Understanding, before: list[int], after: list[int]) -> str:
        """What a critique changed in the list ("darker: fewer Comedy titles, more Crime")."""
        conv = self.conversation
        parts = []
        for critique in said.critiques:
            if critique.kind in NUMERIC_KINDS:
                moved = describe_numeric_shift(
                    conv.catalog, conv.measures, critique.kind, before, after
                )
            else:
                # decades move with years; the sentence is about what the items are
                fields = [f for f in conv.measures.dense_fields if f != "decade"]
                moved = describe_shift(conv.catalog, fields, before, after)
            parts.append(f"{critique.text}: {moved}" if moved else critique.text)
        return (("Moved the list — " + "; ".join(parts) + ".") if parts else "").strip()

    # ----- state updates --------------------------------------------------------------------
    def _apply_answer(self, state: DialogueState, said: Understanding) -> bool:
        """Read yes/no against the pending question; True if it answered one."""
        pending = state.pending
        if pending is None:
            return False
        yes, no = said.answer is True, said.answer is False
        state.pending = None
        if (yes or no) and not (said.mentions or said.constraints):
            # "no thanks" or "sounds good" answer the question; they are not critiques
            said.intents = [i for i in said.intents if i not in (Intent.REJECT, Intent.ACCEPT)]
        if pending.kind == "attribute" and (yes or no):
            state.asked.append([pending.field, pending.value])
            state.add_value(pending.field, pending.value, include=yes, hard=True)
            return True
        if pending.kind == "confirm_title" and (yes or no):
            if yes and pending.position is not None:
                state.like(pending.position)
            return True
        if pending.kind == "contradiction" and pending.field and pending.value:
            restated = any(
                c.field == pending.field and c.value == pending.value for c in said.constraints
            )
            if not restated and (yes or no):
                state.add_value(pending.field, pending.value, include=yes, hard=True)
            return restated or yes or no
        return False

    @staticmethod
    def _asks_for_other_items(state: DialogueState, said: Understanding) -> bool:
        """ "Show me more" right after a list, with nothing new said, means other items."""
        return bool(
            state.shown
            and state.pending is None
            and Intent.RECOMMEND in said.intents
            and not (
                said.mentions
                or said.constraints
                or said.soft_wishes
                or said.year_min
                or said.year_max
                or said.excluded_years
                or said.any_of
                or said.critiques
                or said.superlative
                or said.missing_facets
            )
            and not ({Intent.REJECT, Intent.REJECT_ALL, Intent.MORE_LIKE} & set(said.intents))
        )

    def _referenced(self, state: DialogueState, said: Understanding) -> int | None:
        if said.reference is None and state.focus is not None:
            return state.focus
        if not state.shown:
            return None
        index = said.reference if said.reference is not None else 0
        if -len(state.shown) <= index < len(state.shown):
            state.focus = state.shown[index]
            return state.focus
        return None

    def _apply_references(self, state: DialogueState, said: Understanding) -> None:
        intents = set(said.intents)
        if Intent.REJECT_ALL in intents:
            for position in state.shown:
                state.reject(position)
        elif Intent.REJECT in intents:
            chosen = self._referenced(state, said)
            if chosen is not None:
                state.reject(chosen)
        if Intent.MORE_LIKE in intents:
            chosen = self._referenced(state, said)
            if chosen is not None:
                state.like(chosen)

    def _apply_statements(self, state: DialogueState, said: Understanding) -> None:
        for mention in said.mentions:
            (state.like if mention.liked else state.dislike)(mention.position)
        for c in said.constraints:
            if f"{c.field}={c.value}" not in said.contradictions:
                state.add_value(c.field, c.value, c.include, c.hard)
        if said.year_min is not None:
            state.year_min = said.year_min
        if said.year_max is not None:
            state.year_max = said.year_max
        state.excluded_years += [list(r) for r in said.excluded_years]
        state.wishes += [[t, p] for t, p in said.soft_wishes]
        state.any_of += [[[f, v] for f, v in group] for group in said.any_of]
        if said.superlative:
            state.rank_by = said.superlative
        measures = self.conversation.measures
        reference = state.shown
        if said.reference is not None and -len(state.shown) <= said.reference < len(state.shown):
            reference = [state.shown[said.reference]]  # "like the second one but older"
        elif any(m.liked for m in said.mentions):
            reference = [m.position for m in said.mentions if m.liked]  # "like X but darker"
        for critique in said.critiques:
            state.critiques.append(
                {
                    "kind": critique.kind,
                    "sign": critique.sign,
                    "concept": critique.concept,
                    "bound": critique_bound(measures, critique.kind, critique.concept, reference),
                }
            )

    # ----- acting ----------------------------------------------------------------------------
    def _act(self, state: DialogueState, note: str, force_recommend: bool) -> Turn:
        conv = self.conversation
        rng = np.random.default_rng([conv.seed, state.turn])
        action = conv.policy.decide(state, rng, force_recommend=force_recommend)
        if action.kind == "ask":
            state.pending = self._value_question(action.field or "", action.value or "")
            return self._ask_turn(state, state.pending.text, note)
        return self._recommend_turn(state, action, note)

    def _value_question(self, field_name: str, value: str, follow_up: bool = False) -> Question:
        """A yes/no question about one value, worded by how the space derived the value;
        as a follow-up it is phrased to stand under a list."""
        space = self.conversation.space
        column = space.column(field_name, value)
        kind = space.columns[column].kind if column is not None else "value"
        wording = replies.follow_up_text if follow_up else replies.question_text
        return Question(
            "attribute", field=field_name, value=value, text=wording(field_name, value, kind)
        )

    def _ask_turn(self, state: DialogueState, question: str, note: str) -> Turn:
        state.consecutive_questions += 1
        return Turn(self._with(note, question), question=question)

    def _recommend_turn(self, state: DialogueState, action: Action, note: str) -> Turn:
        state.listed(with_question=action.follow_up is not None and bool(action.items))
        constraints = replies.describe_constraints(
            state.include, state.exclude, state.year_min, state.year_max
        )
        if not action.items:
            state.shown = []
            return Turn(self._with(note, replies.no_candidates_text(constraints)))
        first = not state.shown and not state.rejected
        items = self.describe_items(state, list(action.items))
        state.shown = list(action.items)
        state.focus = None
        text = replies.recommendation_text(self.conversation.catalog, items, constraints, first)
        if action.follow_up is None:
            return Turn(self._with(note, text), items=items)
        state.pending = self._value_question(*action.follow_up, follow_up=True)
        question = state.pending.text
        return Turn(self._with(note, f"{text}\n{question}"), items=items, question=question)

    def describe_items(self, state: DialogueState, positions: list[int]) -> list[dict]:
        """Items with their explanation, ranked as this conversation ranks them.

        Each item is the core `ItemList` entry (`to_dicts(with_explanation=True)`: rank,
        id, title, the conversation's score, cited history, evidence and its text), plus
        the item's year and the wanted values it has (`explanation.matches`, also named
        at the end of the text).

        The explainer gets the conversation's own scores and allowed set, so ranks,
        confidence and "why not" refer to the list the user actually sees; the history
        evidence is the collaborative model's exact (or occlusion) attribution.
        """
        conv = self.conversation
        catalog = conv.catalog
        scores, terms, allowed = conv.scorer.score_terms(state)
        query = Query(
            user_id=state.user_id,
            history=np.asarray(state.profile(), dtype=np.int64),
            exclude=np.flatnonzero(~allowed),
            k=conv.config.rec_size,
        )
        explanations = conv.engine.explain_items(
            query, positions, scores=scores, top_reasons=REASON_TITLES
        )
        for explanation in explanations:
            explanation.terms = _terms_of(terms, explanation.position)
        items = ItemList(catalog, positions, scores[positions], explanations)
        out = items.to_dicts(with_explanation=True)
        for entry, position, explanation in zip(out, positions, explanations, strict=True):
            matches = self._matching_values(state, position)
            evidence = entry["explanation"]
            if matches and explanation.recommended:
                pairs = [(m["field"], m["value"]) for m in matches]
                evidence["text"] += f" It has what you asked for: {describe_values(pairs)}."
            evidence["matches"] = matches
            entry["year"] = catalog.year(position)
        return out

    def _matching_values(self, state: DialogueState, position: int) -> list[dict]:
        """The wanted attribute values this item has (as field/value pairs)."""
        catalog = self.conversation.catalog
        wanted = []
        for group in (state.include, state.soft_include):
            for name, values in group.items():
                have = {v.lower() for v in catalog.values(name, position)}
                wanted += [{"field": name, "value": v} for v in values if v.lower() in have]
        return wanted

    def _explain_turn(self, state: DialogueState, said: Understanding) -> Turn:
        position = said.subject if said.subject is not None else self._referenced(state, said)
        if position is None:
            return Turn("Which one do you mean? Say 'why the first one?' or name the title.")
        state.focus = position
        if position in state.profile():
            title = self.conversation.catalog.titles[position]
            return Turn(f"{title} is one of the titles you like, so I use it to find others.")
        item = self.describe_items(state, [position])[0]
        return Turn(f"{item['title']}: {item['explanation']['text']}", items=[item])

    @staticmethod
    def _with(note: str, text: str) -> str:
        return f"{note} {text}".strip() if note else text


def _terms_of(terms: list[tuple[str, np.ndarray]], position: int) -> dict[str, float]:
    """One item's named terms of the conversation's score (same-named ones added up: two
    preferred values are one "preferred values" term)."""
    out: dict[str, float] = {}
    for name, values in terms:
        out[name] = out.get(name, 0.0) + float(values[position])
    return out


Conversation.session_class = Session
