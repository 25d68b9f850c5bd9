"""Fitting the conversation policy to a bundle, at train time, on its own training users.

A slice of the training users plays cold users: each episode hides one item such a user
rated well, and the simulated user answers as in `simulate`. Their interactions are
taken out of the popularity the belief is built on, so the fit never sees its own
targets. A coordinate search then picks, in turn, whether every list carries the
question the policy would ask next (the user who finds nothing rejects the list and
answers in one reply), the belief's sharpness (the popularity exponent), the objective
the lookahead plans for, the margin a question must win by and how many questions may
come in a row; max-entropy's "few candidates"
threshold is fitted the same way, so that baseline is compared at its best too.
A relative critique's weight ("older", "less known", "better rated") is fitted on the
same targets by simulated critiques (`fit_critique_weight`). The
winner has the highest success rate at the turn limit, less a penalty for average turns
beyond those of recommend-only on the same episodes: a conversation should find more,
and never take longer than a plain list. A setting replaces the current one only when it
wins by more than one standard error of the paired difference on the same episodes, so
that noise does not move the policy away from its defaults. Everything is stored in the
bundle and printed by `whyrec simulate`.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from whyrec.conversation.fields import AttributeSpace
from whyrec.conversation.policy import CandidateScorer, Policy, PolicyConfig
from whyrec.conversation.state import DialogueState
from whyrec.data.splits import well_rated
from whyrec.engine import Engine
from whyrec.evaluation.simulated_users import AttributeUser, Episode, run_attribute_episode

EXPONENTS = (0.5, 1.0, 1.5, 2.0, 3.0)
MARGINS = (-0.03, -0.01, 0.0, 0.01, 0.03, 0.1)
"""Negative margins ask more than the one-question lookahead finds worth it: it cannot
see the questions after the next one."""
SUCCESS_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
THRESHOLD_LISTS = (1, 2, 5, 10, 30)
CRITIQUE_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
CRITIQUE_MEASURES = ("year", "popularity", "quality")
"""max-entropy thresholds, in recommendation lists."""


def validation_slice(
    engine: Engine, episodes: int, seed: int
) -> tuple[list[Episode], np.ndarray, int]:
    """Cold episodes from training users, and the popularity of everyone else."""
    train = engine.bundle.train
    frame = train.interactions
    rng = np.random.default_rng(seed)
    users = np.asarray(train.user_ids, dtype=object)
    chosen = rng.choice(users, min(len(users) // 2, episodes), replace=False)
    rows = frame[frame["user_id"].isin(set(chosen))]
    liked = rows[well_rated(rows).to_numpy()]
    picks = liked.groupby("user_id", sort=True).sample(n=1, random_state=seed)
    targets = engine.catalog.positions(picks["item_id"].astype(str))
    popularity = engine.popularity.astype(np.float64).copy()
    held = engine.catalog.positions(rows["item_id"].astype(str))
    np.subtract.at(popularity, held, 1.0)  # one user, one count (the training matrix is 0/1)
    episodes_out = [Episode(None, int(t), ()) for t in targets]
    return episodes_out, np.maximum(popularity, 0.0), len(chosen)


def _score(
    engine: Engine,
    space: AttributeSpace,
    popularity: np.ndarray,
    episodes: list[Episode],
    config: PolicyConfig,
    seed: int,
) -> dict:
    scorer = CandidateScorer(engine, config, None, space=space, popularity=popularity)
    policy = Policy(scorer, config)
    rng = np.random.default_rng(seed)
    user = AttributeUser(space, engine.catalog, rng, seed)
    outcomes = [run_attribute_episode(policy, user, e, config.horizon, rng) for e in episodes]
    success = np.array([o.success_turn is not None for o in outcomes], dtype=np.float64)
    turns = np.array([o.turns for o in outcomes], dtype=np.float64)
    return {
        "success": float(success.mean()),
        "average_turns": float(turns.mean()),
        "per_episode": (success, turns),
    }


def _noise(a: dict, b: dict, max_turns: int) -> float:
    """Standard error of the paired difference between two fits on the same episodes
    (success less turns in units of the turn limit): a change of setting must win by more
    than this to be taken, or a hundred and fifty episodes pick settings by chance."""
    (success_a, turns_a), (success_b, turns_b) = a["per_episode"], b["per_episode"]
    diff = (success_a - success_b) - (turns_a - turns_b) / max_turns
    return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


def fit_critique_weight(
    engine: Engine,
    space: AttributeSpace,
    popularity: np.ndarray,
    episodes: list[Episode],
    config: PolicyConfig,
) -> dict:
    """The critique weight that brings simulated targets closest, and the search.

    A cold user is shown the first list; the simulated user then critiques it along the
    measure on which their target differs most from that list (in standard deviations),
    in the target's direction, and the list is recomputed as the conversation does:
    items past the shown list's mean on that measure, scored by the belief plus
    weight × the measure. The weight with the best mean reciprocal rank of the target
    wins: too small and the list barely moves past the bound, too large and it runs to
    the extreme of the measure (the oldest, the most obscure) instead of to what the user
    was after."""
    scorer = CandidateScorer(engine, config, None, space=space, popularity=popularity)
    measures = scorer.measures
    scores, allowed = scorer.scores(DialogueState())
    order = np.argsort(-np.where(allowed, scores, -np.inf))
    shown = order[: config.rec_size]
    reciprocal = {w: [] for w in CRITIQUE_WEIGHTS}
    used = 0
    for episode in episodes:
        target = episode.target
        if target in set(shown.tolist()):
            continue
        best_kind, best_gap = None, 0.0
        for kind in CRITIQUE_MEASURES:
            raw = measures.values(kind)
            if raw is None or not np.isfinite(raw[target]):
                continue
            z = measures.direction(kind)
            gap = float(z[target] - np.nanmean(z[shown]))
            if abs(gap) > abs(best_gap):
                best_kind, best_gap = kind, gap
        if best_kind is None:
            continue
        sign = 1.0 if best_gap > 0 else -1.0
        raw = measures.values(best_kind)
        with np.errstate(invalid="ignore"):
            passed = allowed & (sign * (raw - np.nanmean(raw[shown])) > 0)
        passed[shown] = False
        if not passed[target]:
            continue
        used += 1
        direction = np.nan_to_num(measures.direction(best_kind))
        for weight in CRITIQUE_WEIGHTS:
            moved = np.where(passed, scores + weight * sign * direction, -np.inf)
            rank = int((moved > moved[target]).sum())
            reciprocal[weight].append(1.0 / (1.0 + rank))
    if not used:
        return {"critique_weight": config.critique_weight, "episodes": 0}
    merit = {w: float(np.mean(r)) for w, r in reciprocal.items()}
    best = max(CRITIQUE_WEIGHTS, key=lambda w: merit[w])  # first best: the smallest
    return {
        "critique_weight": best,
        "episodes": used,
        "search": [{"critique_weight": w, "mrr": round(m, 5)} for w, m in merit.items()],
    }


def _public(result: dict) -> dict:
    """A fit's figures for `bundle.json` (without the per-episode arrays)."""
    return {k: v for k, v in result.items() if k != "per_episode"}


def _merit(result: dict, reference_turns: float, max_turns: int) -> float:
    """Success by the turn limit, less the turns spent beyond just listing items (the
    recommend-only policy's average) in units of the turn limit: a conversation should
    find more, and never take longer than a plain list would."""
    return result["success"] - max(0.0, result["average_turns"] - reference_turns) / max_turns


def calibrate(
    engine: Engine,
    episodes: int = 150,
    max_turns: int = 10,
    rec_size: int = 10,
    seed: int = 0,
) -> dict:
    """The fitted parameters and how they were found (for `bundle.json`)."""
    started = time.perf_counter()
    space = AttributeSpace(engine.catalog)
    base = PolicyConfig(rec_size=rec_size, horizon=max_turns)
    chosen, popularity, n_users = validation_slice(engine, episodes, seed)
    record = {
        "validation": {
            "users": n_users,
            "episodes": len(chosen),
            "max_turns": max_turns,
            "rec_size": rec_size,
        },
        "search": [],
    }
    if not chosen or not len(space):
        record["parameters"] = base.fitted()
        record["note"] = "nothing to fit: " + (
            "no validation targets" if not chosen else "no attribute value to ask about"
        )
        return record

    seen: dict[PolicyConfig, dict] = {}
    reference = _score(
        engine, space, popularity, chosen, replace(base, kind="recommend-only"), seed
    )
    record["recommend_only"] = _public(reference)

    def scored(config: PolicyConfig, name: str) -> dict:
        if config not in seen:
            seen[config] = _score(engine, space, popularity, chosen, config, seed)
            option = getattr(config, name)
            record["search"].append({"policy": config.kind, name: option, **_public(seen[config])})
        return seen[config]

    def search(config: PolicyConfig, name: str, options) -> PolicyConfig:
        """One coordinate: the current setting stays unless another beats it beyond noise."""
        best_config = config
        best = scored(config, name)
        for option in options:
            trial = replace(config, **{name: option})
            result = scored(trial, name)
            gain = _merit(result, reference["average_turns"], max_turns) - _merit(
                best, reference["average_turns"], max_turns
            )
            if gain > _noise(result, best, max_turns):
                best, best_config = result, trial
        return best_config

    ours = search(base, "follow_up_lists", (True,))
    ours = search(ours, "popularity_exponent", EXPONENTS)
    ours = search(ours, "success_weight", SUCCESS_WEIGHTS)
    ours = search(ours, "ask_margin", MARGINS)
    ours = search(ours, "max_consecutive_questions", (3, 5, 0))
    critiques = fit_critique_weight(engine, space, popularity, chosen, ours)
    record["critiques"] = critiques
    ours = replace(ours, critique_weight=critiques["critique_weight"])
    entropy = replace(ours, kind="max-entropy")
    entropy = search(entropy, "candidate_threshold", tuple(n * rec_size for n in THRESHOLD_LISTS))
    record["parameters"] = {
        **ours.fitted(),
        "candidate_threshold": entropy.candidate_threshold,
    }
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record
