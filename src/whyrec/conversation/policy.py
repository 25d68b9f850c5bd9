"""Scoring candidates from the dialogue state, and deciding whether to ask or recommend.

The scores become a belief: a probability, for every allowed item, that it is the one
the user is after. A user with a taste profile (history, or items liked in the dialogue)
is scored by the collaborative model, with a small popularity prior; a cold user has
only popularity and the constraints stated so far, so the belief is popularity raised
to a power that is fitted per bundle (`calibrate.py`). Hard constraints filter, soft
ones, dislikes and free-text wishes move scores.

Answers follow EAR/CPR: a yes to a value is a hard constraint, a no excludes it, and a
rejected list removes its items. Our policy then plans over the turns left. Recommending
at every remaining turn would succeed with the mass of the top r·k items; asking value v
first and recommending at the r-1 turns after succeeds, in expectation over the answer,
with the top-(r-1)·k mass of the yes side plus that of the no side (a rollout of the
recommend-only policy, which it therefore never does worse than under its belief). It
asks when that gain beats a margin and recommends otherwise; the margin, the belief's
sharpness and the objective (success by the last turn, or early success, i.e. fewer
turns, or a mix) are fitted per bundle. The baselines from the literature are here too:
recommend-only, random, and EAR's max-entropy (the value whose popularity-weighted
share of the candidates is closest to a half, hard filtering, recommending when few
candidates remain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from functools import cache

import numpy as np

from whyrec.conversation.directions import (
    CRITIQUE_WEIGHT,
    ItemMeasures,
    critique_bounds,
    steering,
)
from whyrec.conversation.fields import AttributeSpace
from whyrec.conversation.state import DialogueState
from whyrec.core import Query
from whyrec.data.vocabulary import Vocabulary
from whyrec.engine import Engine
from whyrec.explain.explanation import (
    TERM_CLOSE_TO_LIKED,
    TERM_DISLIKES,
    TERM_HISTORY,
    TERM_POPULARITY,
    TERM_PREFERRED,
    TERM_STEERING,
    TERM_WISHES,
)
from whyrec.filters import ItemFilter
from whyrec.ranking import top_k

POLICIES = ("ours", "ours-one-action", "recommend-only", "random", "max-entropy")
"""`ours-one-action` is ours choosing each turn between a list and a question, never both
(the turn the published baselines take): it shows what asking under a list adds."""
PAGERANK_RESTART = 0.3
SHORTLIST = 48
"""Values scored by the full lookahead: the most informative ones under the belief. A
bound on work per turn, so a field with thousands of values costs no more than one with
fifty."""

FIRST_QUESTIONS = 12
"""First questions followed by a second in the lookahead: the best of the shortlist by a
one-question lookahead."""

WishScorer = Callable[[list[tuple[str, bool]]], np.ndarray | None]
"""Maps free-text wishes to one similarity score per catalog item (or None)."""


@dataclass(frozen=True)
class PolicyConfig:
    kind: str = "ours"
    rec_size: int = 10
    horizon: int = 10
    """Turns the policy plans for (the simulator's turn limit); past it, a rolling horizon."""
    popularity_exponent: float = 1.0
    """A cold user's belief is ∝ (1 + popularity) ** this (fitted per bundle)."""
    ask_margin: float = 0.0
    """Ask only when the lookahead beats recommending by this much (fitted per bundle)."""
    success_weight: float = 1.0
    """What the lookahead plans for: 1 counts success by the last turn only, 0 success at
    every turn alike (which rewards succeeding early, i.e. fewer turns); fitted between."""
    candidate_threshold: int = 0
    """max-entropy recommends when at most this many candidates remain (0: the list size)."""
    max_consecutive_questions: int = 3
    """At most this many questions in a row before showing items (0: no cap; fitted)."""
    temperature: float = 1.0
    lookahead_items: int = 4000
    """The lookahead considers the most probable items only; they hold nearly all mass."""
    soft_weight: float = 1.0
    dislike_weight: float = 0.5
    wish_weight: float = 1.5
    popularity_weight: float = 0.15
    pagerank_weight: float = 0.3
    critique_weight: float = CRITIQUE_WEIGHT
    """Push of a relative critique ("older"), in standard deviations of its measure (fitted)."""
    follow_up_lists: bool = False
    """Every turn shows a list, and under it the question that best splits what would be
    left were the list to miss (fitted). When False the policy chooses each turn between
    a list and a question, and only a specific opening's list carries one."""

    FITTED = (
        "popularity_exponent",
        "ask_margin",
        "success_weight",
        "max_consecutive_questions",
        "candidate_threshold",
        "critique_weight",
        "follow_up_lists",
    )

    @classmethod
    def from_bundle(cls, info: dict, **overrides) -> PolicyConfig:
        """The calibrated parameters a bundle stores (defaults where it has none)."""
        fitted = (info or {}).get("conversation_policy", {}).get("parameters", {})
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in fitted.items() if k in known}
        return replace(cls(**values), **overrides)

    def fitted(self) -> dict:
        data = asdict(self)
        return {k: data[k] for k in self.FITTED}


@dataclass(frozen=True)
class Action:
    kind: str  # "ask" or "recommend"
    field: str | None = None
    value: str | None = None
    items: tuple[int, ...] = ()
    expected_success: float = 0.0
    # a list can carry the question the policy would ask if it misses: (field, value)
    follow_up: tuple[str, str] | None = None


def _zscore(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    finite = mask & np.isfinite(values)
    out = np.zeros_like(values, dtype=np.float64)
    if finite.sum() < 2:
        return out
    chosen = values[finite].astype(np.float64)
    spread = chosen.std() or 1.0
    out[finite] = (chosen - chosen.mean()) / spread
    out[mask & ~np.isfinite(values)] = -3.0
    return out


class CandidateScorer:
    """Turns a dialogue state into scores and an allowed-items mask."""

    def __init__(
        self,
        engine: Engine,
        config: PolicyConfig,
        wish_scorer: WishScorer | None = None,
        measures: ItemMeasures | None = None,
        space: AttributeSpace | None = None,
        popularity: np.ndarray | None = None,
    ):
        """`measures`: directions for critiques and superlatives (see `directions`).
        `popularity` overrides the training popularity (calibration leaves its
        validation users out of it)."""
        self.engine = engine
        self.catalog = engine.catalog
        self.config = config
        self.wish_scorer = wish_scorer
        self.measures = measures or ItemMeasures(engine.bundle.train, wish_scorer)
        self.space = space if space is not None else AttributeSpace(self.catalog)
        self.columns = [(c.field, c.value) for c in self.space.columns]
        self.column_of = Vocabulary(self.columns, "attribute value", duplicates="last")
        self._model_cache: dict[tuple[int, ...], np.ndarray] = {}
        self._pagerank_cache: dict[tuple, np.ndarray] = {}
        self._mask_cache: dict[tuple[str, str], np.ndarray] = {}
        counts = engine.popularity if popularity is None else popularity
        self.popularity = np.asarray(counts, dtype=np.float64)
        self.log_popularity = np.log1p(self.popularity)
        self.popularity_z = _zscore(self.log_popularity, np.ones(len(counts), bool))

    @property
    def graph(self):
        return self.engine.explainer.graph

    def value_mask(self, field_name: str, value: str) -> np.ndarray:
        """Items having one attribute value (a path prefix or a range included)."""
        key = (field_name, value.lower())
        if key not in self._mask_cache:
            if len(self._mask_cache) > 4096:
                self._mask_cache.clear()
            self._mask_cache[key] = self.space.mask(field_name, value)
        return self._mask_cache[key]

    def dialogue_pagerank(self, state: DialogueState) -> np.ndarray | None:
        """Personalized PageRank over the item-attribute graph from the items liked in the
        dialogue (and the values asked for with them): items close to all of them score
        high. Values alone are hard or soft constraints already."""
        if not state.liked:
            return None
        graph = self.graph
        values = [
            node
            for group in (state.include, state.soft_include)
            for f, vs in group.items()
            for v in vs
            if (node := graph._index.get(f"{f}={v}")) is not None
        ]
        key = (tuple(state.liked), tuple(values))
        if key not in self._pagerank_cache:
            if len(self._pagerank_cache) > 256:
                self._pagerank_cache.clear()
            # ranking needs the order, not six decimals: a coarse tolerance and a higher
            # restart converge in a few dozen sparse products instead of a few hundred
            self._pagerank_cache[key], _ = graph.personalized_pagerank(
                state.liked, values, restart=PAGERANK_RESTART, tol=1e-6, max_iter=60
            )
        return self._pagerank_cache[key]

    def item_filter(self, state: DialogueState) -> ItemFilter:
        """The dialogue's hard constraints as the engine's one filter type: values asked
        for (all of them), values and years ruled out, and every item already known."""
        known = set(self.catalog.attributes)
        require: dict[str, set[str]] = {}
        for field_name, value in state.required_values():
            if field_name in known and self.space.column(field_name, value) is None:
                require.setdefault(field_name, set()).add(value)
        blocked = [
            p
            for group in (state.history, state.liked, state.disliked, state.rejected)
            for p in group
        ]
        return ItemFilter(
            exclude={
                f: {v for v in vs if self.space.column(f, v) is None}
                for f, vs in state.exclude.items()
                if f in known and any(self.space.column(f, v) is None for v in vs)
            },
            year_min=state.year_min,
            year_max=state.year_max,
            require=require,
            excluded_years=[(low, high) for low, high in state.excluded_years],
            blocked=frozenset(int(p) for p in blocked),
            any_of=[
                [(f, v) for f, v in group if f in known]
                for group in state.any_of
                if not self._derived_group(group)
            ],
        )

    def query(self, state: DialogueState) -> Query:
        """What the engine ranks for this dialogue: the profile, under its filter."""
        return Query(
            user_id=state.user_id,
            history=np.asarray(state.profile(), dtype=np.int64),
            item_filter=self.item_filter(state),
            k=self.config.rec_size,
        )

    def allowed(self, state: DialogueState) -> np.ndarray:
        """What the engine allows for the dialogue's query (its filter, less the profile
        and what the user met without liking), further narrowed by the askable values
        (paths, ranges) the space derives, which the catalog's raw labels do not hold, and
        by the bounds of any relative critique ("older")."""
        query = self.query(state)
        mask = self.engine.allowed(query, self.engine.history_of(query))
        for field_name, value in state.required_values():
            if self.space.column(field_name, value) is not None:
                mask &= self.value_mask(field_name, value)
        for field_name, values in state.exclude.items():
            for value in values:
                if self.space.column(field_name, value) is not None:
                    mask &= ~self.value_mask(field_name, value)
        for group in state.any_of:
            if self._derived_group(group):
                either = np.zeros(len(self.catalog), dtype=bool)
                for field_name, value in group:
                    either |= self.value_mask(field_name, value)
                mask &= either
        bounds = critique_bounds(state.critiques, self.measures)
        return mask & bounds if bounds is not None else mask

    def _derived_group(self, group: list[tuple[str, str]]) -> bool:
        """Whether an or-group names a value the space derives (a path prefix, a range):
        such a group is met through the space's masks, not the catalog's labels."""
        return any(self.space.column(f, v) is not None for f, v in group)

    def _value_mask(self, field_name: str, values: list[str]) -> np.ndarray:
        mask = np.zeros(len(self.catalog), dtype=bool)
        for value in values:
            mask |= self.value_mask(field_name, value)
        return mask

    def model_scores(self, positions: list[int]) -> np.ndarray:
        """The collaborative model's scores for a profile, cached: profiles repeat across turns."""
        key = tuple(positions)
        if key not in self._model_cache:
            if len(self._model_cache) > 256:
                self._model_cache.clear()
            self._model_cache[key] = self.engine.model.score([np.asarray(key, dtype=np.int64)])[0]
        return self._model_cache[key]

    def scores(self, state: DialogueState) -> tuple[np.ndarray, np.ndarray]:
        """Log-belief up to a constant (before the temperature), and the allowed mask."""
        total, _, allowed = self.score_terms(state)
        return total, allowed

    def score_terms(
        self, state: DialogueState
    ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]], np.ndarray]:
        """(log-belief, its named terms in the order they were added, allowed mask).

        The belief is the running sum of the terms (`TERM_*`), added one by one in this
        order, so an explanation citing them adds up to the score exactly."""
        allowed = self.allowed(state)
        config = self.config
        terms: list[tuple[str, np.ndarray]] = []
        total = np.zeros(len(self.catalog))  # 0 + x is x exactly: the sums are unchanged

        def add(name: str, values: np.ndarray) -> None:
            nonlocal total
            terms.append((name, values))
            total = total + values

        profile = state.profile()
        if profile:
            add(TERM_HISTORY, _zscore(self.model_scores(profile), allowed))
            add(TERM_POPULARITY, config.popularity_weight * self.popularity_z)
        else:
            add(TERM_POPULARITY, config.popularity_exponent * self.log_popularity)
        if state.disliked:
            raw = self.model_scores(state.disliked)
            add(TERM_DISLIKES, -(config.dislike_weight * np.maximum(_zscore(raw, allowed), 0.0)))
        for name, values in state.soft_include.items():
            add(TERM_PREFERRED, config.soft_weight * self._value_mask(name, values))
        for name, values in state.soft_exclude.items():
            add(TERM_PREFERRED, -(config.soft_weight * self._value_mask(name, values)))
        if self.config.pagerank_weight:
            visits = self.dialogue_pagerank(state)
            if visits is not None:
                closeness = _zscore(np.log(visits + 1e-12), allowed)
                add(TERM_CLOSE_TO_LIKED, self.config.pagerank_weight * closeness)
        if state.wishes and self.wish_scorer is not None:
            similarity = self.wish_scorer([(str(t), bool(p)) for t, p in state.wishes])
            if similarity is not None:
                # in units of the belief's own spread: a wish moves items as much for a
                # cold user (popularity only) as for one the model knows
                spread = float(total[allowed].std()) if allowed.sum() > 1 else 1.0
                wished = _zscore(similarity, allowed)
                add(TERM_WISHES, config.wish_weight * (spread or 1.0) * wished)
        steer = steering(state.critiques, state.rank_by, self.measures, config.critique_weight)
        if steer is not None:
            add(TERM_STEERING, steer)
        return total, terms, allowed

    def distribution(self, scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        probs = np.zeros_like(scores)
        if not allowed.any():
            return probs
        logits = scores[allowed] / self.config.temperature
        logits -= logits.max()
        weights = np.exp(logits)
        probs[allowed] = weights / weights.sum()
        return probs


class Policy:
    """Chooses the next system action from the candidate distribution."""

    def __init__(self, scorer: CandidateScorer, config: PolicyConfig) -> None:
        if config.kind not in POLICIES:
            from whyrec.errors import WhyrecError

            raise WhyrecError(f"unknown policy {config.kind!r}; choose from {', '.join(POLICIES)}")
        if config.kind == "ours-one-action":
            config = replace(config, kind="ours", follow_up_lists=False)
        self.scorer = scorer
        self.config = config

    def top_items(
        self, state: DialogueState, scores: np.ndarray, allowed: np.ndarray
    ) -> np.ndarray:
        """The list the engine ranks from the dialogue's scores and filter (values the
        space derives are ruled out through the scores)."""
        query = self.scorer.query(state)
        scores = np.where(allowed, scores, -np.inf)
        return self.scorer.engine.run(query, explain=False, scores=scores).positions

    def turns_left(self, state: DialogueState) -> int:
        """Turns left in the planning horizon, this one included (rolling past its end)."""
        horizon = self.config.horizon
        return horizon - state.turn + 1 if 1 <= state.turn <= horizon else horizon

    def decide(
        self, state: DialogueState, rng: np.random.Generator, force_recommend: bool = False
    ) -> Action:
        # a decision multiplies small matrices: BLAS threads only cost here (a 4000×25 by
        # 4000×48 product took 58 ms with 2 threads on a busy machine, 2.4 ms with one)
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._decide(state, rng, force_recommend)

    def _listing(self, state: DialogueState) -> tuple[Action, np.ndarray, np.ndarray]:
        """The list to show now, with the belief and allowed mask it was ranked from."""
        scores, allowed = self.scorer.scores(state)
        items = self.top_items(state, scores, allowed)
        probs = self.scorer.distribution(scores, allowed)
        now = float(probs[items].sum()) if len(items) else 0.0
        recommend = Action("recommend", items=tuple(int(i) for i in items), expected_success=now)
        return recommend, probs, allowed

    def _decide(
        self, state: DialogueState, rng: np.random.Generator, force_recommend: bool
    ) -> Action:
        config, kind = self.config, self.config.kind
        if kind == "ours" and config.follow_up_lists and not force_recommend:
            return self._list_and_ask(state)
        recommend, probs, allowed = self._listing(state)
        now = recommend.expected_success
        left = self.turns_left(state)
        if opening(state) and is_specific(state) and not force_recommend:
            return self._list_then_ask(state, recommend, rng)
        if (
            force_recommend
            or kind == "recommend-only"
            or left <= 1
            or allowed.sum() <= config.rec_size
            or (
                kind == "ours"
                and config.max_consecutive_questions
                and state.consecutive_questions >= config.max_consecutive_questions
            )
        ):
            return recommend
        askable = self.askable_columns(state, allowed)
        if not len(askable):
            return recommend
        if kind == "ours":
            column, expected = self._plan(probs, askable, left)
            if column is None:
                return recommend
        elif kind == "max-entropy":
            if allowed.sum() <= (config.candidate_threshold or config.rec_size):
                return recommend
            weights = np.where(allowed, self.scorer.popularity + 1.0, 0.0)
            share = self.scorer.space.weighted(weights)[askable] / weights.sum()
            column, expected = int(askable[int(np.argmax(_binary_entropy(share)))]), now
        else:  # random: a fair coin between asking a random value and recommending
            if rng.random() < 0.5:
                return recommend
            column, expected = int(askable[int(rng.integers(len(askable)))]), now
        field_name, value = self.scorer.columns[column]
        return Action("ask", field=field_name, value=value, expected_success=expected)

    def _list_and_ask(self, state: DialogueState) -> Action:
        """A list, and under it the question whose answer best helps the turns after it,
        planned on what is left once the list has missed: the user who finds nothing
        rejects the list and answers in one reply, so a question costs no turn of its own."""
        recommend, _, _ = self._listing(state)
        if not recommend.items or self.turns_left(state) <= 1:
            return recommend
        missed = self._missed(state, recommend)
        scores, allowed = self.scorer.scores(missed)
        if allowed.sum() <= self.config.rec_size:
            return recommend
        askable = self.askable_columns(missed, allowed)
        if not len(askable):
            return recommend
        probs = self.scorer.distribution(scores, allowed)
        column, _ = self._plan(probs, askable, self.turns_left(missed), always=True)
        return replace(recommend, follow_up=self.scorer.columns[column])

    @staticmethod
    def _missed(state: DialogueState, recommend: Action) -> DialogueState:
        """The dialogue as it will stand next turn if the user rejects this list."""
        missed = DialogueState.from_dict(state.to_dict())
        for position in recommend.items:
            missed.reject(position)
        missed.shown = list(recommend.items)
        missed.turn = state.turn + 1
        return missed

    def _list_then_ask(
        self, state: DialogueState, recommend: Action, rng: np.random.Generator
    ) -> Action:
        """A specific first request gets its list at once; the question the policy would ask
        were the list to miss rides along with it, so that the turn the user spent saying
        what they want is not also spent on a list alone (a user who finds nothing answers
        it and rejects the list in one reply)."""
        if not recommend.items:
            return recommend
        then = self._decide(self._missed(state, recommend), rng, force_recommend=False)
        if then.kind != "ask" or then.field is None or then.value is None:
            return recommend
        return replace(recommend, follow_up=(then.field, then.value))

    def askable_columns(self, state: DialogueState, allowed: np.ndarray) -> np.ndarray:
        """Values not yet discussed that split the allowed candidates (some have it, some not)."""
        counts = self.scorer.space.counts(allowed)
        useful = (counts > 0) & (counts < allowed.sum())
        known = [self.scorer.column_of.get((f, v)) for f, v in self._known_values(state)]
        useful[[k for k in known if k is not None]] = False
        return np.flatnonzero(useful)

    @staticmethod
    def _known_values(state: DialogueState) -> list[tuple[str, str]]:
        known = [(f, v) for f, v in state.asked]
        for group in (state.include, state.exclude, state.soft_include, state.soft_exclude):
            known += [(f, v) for f, values in group.items() for v in values]
        # "crime or film-noir" said either will do: asking which one would ask it again
        known += [(f, v) for group in state.any_of for f, v in group]
        return known

    def _plan(
        self, probs: np.ndarray, askable: np.ndarray, left: int, always: bool = False
    ) -> tuple[int | None, float]:
        """The value to ask, or None to recommend, by a two-action lookahead over `left` turns
        (`always`: the best value to ask, however it compares with recommending).

        Values are shortlisted by the entropy of their yes-probability under the belief;
        each first action (recommend now, or ask one of them) is followed, on each side of
        its outcome, by the better of recommending from then on and asking that side's
        most informative value first. The result is compared by the success it plans for.
        """
        share = self.scorer.space.weighted(probs)[askable]
        if len(askable) > SHORTLIST:
            keep = np.argpartition(-_binary_entropy(share), SHORTLIST - 1)[:SHORTLIST]
            askable = askable[np.sort(keep)]
        k = self.config.rec_size
        order = top_k(probs, self.config.lookahead_items)
        order = order[probs[order] > 0]
        p_top = probs[order]
        has = self.scorer.space.matrix[order][:, askable].toarray() > 0
        weights = self._turn_weights(left)
        first = np.argsort(
            -(self._found(p_top, has, 2, weights) + self._found(p_top, ~has, 2, weights))
        )
        first = first[:FIRST_QUESTIONS]
        rest = np.arange(len(order)) >= k  # what is left after recommending the top k now
        branches = np.concatenate([has[:, first], ~has[:, first], rest[:, None]], axis=1)
        follow = self._found(p_top, branches, 2, weights)
        if left >= 3:  # a second question can still be followed by a recommendation
            mass = p_top @ branches
            # float operands: numpy multiplies a float by a bool matrix in a slow generic
            # loop, not in BLAS
            yes = (p_top[:, None] * branches).T @ has.astype(np.float64)
            entropy = _binary_entropy(yes / np.maximum(mass, 1e-300)[:, None])
            second = has[:, np.argmax(entropy, axis=1)]
            split = self._found(p_top, branches & second, 3, weights)
            split += self._found(p_top, branches & ~second, 3, weights)
            follow = np.maximum(follow, split)
        n = len(first)
        ask = follow[:n] + follow[n : 2 * n]
        recommend = sum(weights.values()) * float(p_top[:k].sum()) + follow[-1]
        best = int(np.argmax(ask))
        if not always and ask[best] - recommend <= self.config.ask_margin:
            return None, float(recommend)
        return int(askable[first[best]]), float(ask[best])

    def _found(
        self, p_top: np.ndarray, masks: np.ndarray, start: int, weights: dict[int, float]
    ) -> np.ndarray:
        """For each column of `masks` (a set of candidates, in belief order): the weighted
        mass found by recommending its top items at every turn from `start` on."""
        k = self.config.rec_size
        last = max(weights)
        # an item found at turn τ counts for every weighted turn from τ on: tail[τ]
        tail = np.zeros(last + 2)
        for t, weight in weights.items():
            if t >= start:
                tail[t] += weight
        tail = np.cumsum(tail[::-1])[::-1]
        # the c-th candidate of a set is listed at turn start + (c - 1) // k
        counts = np.cumsum(masks, axis=0, dtype=np.int64)
        turn = np.minimum(start + (counts - 1) // k, last + 1)
        return p_top @ np.where(masks, tail[turn], 0.0)

    def _turn_weights(self, left: int) -> dict[int, float]:
        """How much success by each turn from now counts: `success_weight` on the last
        turn, the rest spread over all turns (the area under the success curve)."""
        spread = (1.0 - self.config.success_weight) / left
        weights = {t: spread for t in range(1, left + 1)}
        weights[left] += self.config.success_weight
        return weights


@cache
def _blas_controller():
    """The process's BLAS libraries, found once (a lookup costs milliseconds; a limit
    through a known controller a tenth of one)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def opening(state: DialogueState) -> bool:
    """Nothing has happened yet but what the user said: no list, no rejection, no
    question answered (the attribute simulator's opening value counts as answered)."""
    return not (state.shown or state.rejected or state.asked)


def is_specific(state: DialogueState) -> bool:
    """Whether the user has said what they want: a first specific request gets a list at
    once; a question is for a vague one ("what should I watch?")."""
    return bool(
        state.liked
        or state.include
        or state.exclude
        or state.soft_include
        or state.any_of
        or state.year_min is not None
        or state.year_max is not None
        or state.excluded_years
        or state.wishes
        or state.critiques
        or state.rank_by
    )


def _binary_entropy(share: np.ndarray) -> np.ndarray:
    share = np.clip(share, 1e-12, 1 - 1e-12)
    return -(share * np.log2(share) + (1 - share) * np.log2(1 - share))
