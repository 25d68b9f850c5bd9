"""Conversational evaluation: every policy against the same simulated users and episodes.

Metrics (docs/metrics.md): SR@t, AT (a failure counts as the turn limit) and hDCG, each
with a 95% interval from `whyrec.evaluation.statistics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from whyrec.conversation.policy import POLICIES, PolicyConfig
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.evaluation.simulated_users import (
    USER_MODES,
    AttributeUser,
    Episode,
    LanguageUser,
    Outcome,
    hdcg,
    run_attribute_episode,
    run_language_episode,
)
from whyrec.evaluation.statistics import paired_tests, rate_interval, t_interval


def summarize(outcomes: list[Outcome], max_turns: int) -> dict:
    """SR@5/10/max, AT and hDCG with 95% Student-t intervals (`whyrec.evaluation.statistics`,
    the same intervals offline evaluation reports)."""
    n = len(outcomes)
    success_turns = np.array([o.success_turn or 0 for o in outcomes])
    turns = np.array([o.turns for o in outcomes], dtype=float)
    scores = np.array([hdcg(o.success_turn, o.rank) if o.success_turn else 0.0 for o in outcomes])
    rates, intervals = {}, {}
    for t in sorted({5, 10, max_turns}):
        if t > max_turns:
            continue
        hits = (success_turns > 0) & (success_turns <= t)
        rates[str(t)] = float(hits.mean())
        intervals[str(t)] = list(rate_interval(hits))
    return {
        "episodes": n,
        "success_rate_at": rates,
        "average_turns": float(turns.mean()),
        "hdcg": float(scores.mean()),
        "ci95": {
            "success_rate_at": intervals,
            "average_turns": list(t_interval(turns)),
        },
    }


def simulate(
    engine: Engine,
    episodes: list[Episode],
    policies: list[str],
    user_mode: str = "attribute",
    max_turns: int = 15,
    rec_size: int = 10,
    seed: int = 0,
    progress: Callable[[str, int], None] | None = None,
    semantic_wishes: bool = True,
    llm=None,
    llm_system: bool = False,
    base: PolicyConfig | None = None,
) -> dict:
    """Run every policy on the same episodes; the first policy's numbers are the top level.

    Every policy runs with the parameters fitted for the bundle (`base`, by default the
    bundle's calibration), its kind, list size and the turn limit as its horizon. `llm`
    (an `LLMConfig`) drives the "llm" user mode and, with `llm_system`, the conversation
    under test too.
    """
    if user_mode not in USER_MODES:
        raise WhyrecError(f"unknown user mode {user_mode!r}; choose {', '.join(USER_MODES)}")
    if (user_mode == "llm" or llm_system) and (llm is None or not llm.configured):
        raise WhyrecError("the llm user mode and --llm need an LLM configuration (--llm-*)")
    if max_turns < 1 or rec_size < 1:
        raise WhyrecError("--max-turns and --rec-size must be at least 1")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        raise WhyrecError(f"unknown policy {unknown}; choose from {', '.join(POLICIES)}")
    results = {}
    per_policy: dict[str, list[Outcome]] = {}
    for name in policies:
        config = replace(
            base or PolicyConfig.from_bundle(engine.bundle.info),
            kind=name,
            rec_size=rec_size,
            horizon=max_turns,
        )
        from whyrec.llm import open_conversation

        conversation = open_conversation(
            engine,
            llm=llm if llm_system else None,
            policy=config,
            seed=seed,
            wish_scorer="auto" if semantic_wishes else None,
        )
        rng = np.random.default_rng(seed)
        outcomes = []
        llm_user = None
        if user_mode == "llm":
            from whyrec.evaluation.llm_user import LLMUser

            llm_user = LLMUser(conversation.scorer.space, engine.catalog, rng, llm, seed=seed)
        for episode in episodes:
            if user_mode == "attribute":
                user = AttributeUser(conversation.scorer.space, engine.catalog, rng, seed)
                outcomes.append(
                    run_attribute_episode(conversation.policy, user, episode, max_turns, rng)
                )
            else:
                user = llm_user or LanguageUser(
                    conversation.scorer.space, engine.catalog, rng, seed
                )
                outcomes.append(run_language_episode(conversation, user, episode, max_turns))
            if progress:
                progress(name, 1)
        results[name] = summarize(outcomes, max_turns)
        if llm_user is not None:
            results[name]["llm_user"] = dict(llm_user.stats)
        per_policy[name] = outcomes
    space = conversation.scorer.space
    first = results[policies[0]]
    report = {k: first[k] for k in ("episodes", "success_rate_at", "average_turns", "hdcg")}
    if "llm_user" in first:
        report["llm_user"] = first["llm_user"]
    report.update(
        {
            "ci95": first["ci95"],
            "policy": policies[0],
            "user_mode": user_mode,
            "max_turns": max_turns,
            "rec_size": rec_size,
            "seed": seed,
            "parameters": config.fitted(),
            "calibration": engine.bundle.info.get("conversation_policy"),
            "askable_values": space.fields(),
        }
    )
    if not len(space):
        report["questions"] = (
            "impossible: the catalog has no attribute value shared by several items, so "
            "every policy can only recommend"
        )
    if len(policies) > 1:
        report["policies"] = results
        report["paired_vs_" + policies[0]] = {
            name: paired_difference(per_policy[policies[0]], per_policy[name], max_turns)
            for name in policies[1:]
        }
    return report


def paired_difference(ours: list[Outcome], other: list[Outcome], max_turns: int) -> dict:
    """First policy minus another on the same episodes, with 95% paired intervals and
    paired tests (t-test, Wilcoxon).

    Pairing removes the episode-to-episode spread that separate intervals carry, which
    is the right test when both policies met the same targets.
    """
    won = np.array([o.success_turn is not None for o in ours], dtype=float)
    won_other = np.array([o.success_turn is not None for o in other], dtype=float)
    turns = np.array([o.turns for o in ours], float)
    turns_other = np.array([o.turns for o in other], float)
    return {
        f"sr@{max_turns}_diff": float((won - won_other).mean()),
        f"sr@{max_turns}_diff_ci95": list(t_interval(won - won_other)),
        f"sr@{max_turns}_diff_tests": paired_tests(won, won_other),
        "average_turns_diff": float((turns - turns_other).mean()),
        "average_turns_diff_ci95": list(t_interval(turns - turns_other)),
        "average_turns_diff_tests": paired_tests(turns, turns_other),
    }
