"""The LLM layer under a misbehaving LLM, with the LLM down, and against a real LLM.

    python benchmarks/bench_llm.py [--turns 1000] [--down-turns 60] [--timeout 0.5]
    python benchmarks/bench_llm.py --real-base-url http://127.0.0.1:8080/v1 \
        --real-model smollm2 [--real-turns 200] [--real-timeout 20] [--eval-users 40]

1. Misbehaving: a scripted OpenAI-compatible server on loopback (tests/llm_server.py)
   answers every request of every turn with a random misbehaviour (malformed JSON, wrong
   fields, invented ids and titles, titles outside the candidates, bad tool calls, 429,
   500, dropped connections, garbage bodies, slow answers) or, sometimes, well. Simulated
   language users talk until at least --turns turns. Every reply is checked independently
   of the guard: no invented title, no [[id]] left, every "Title (year)" a catalog title.
   Target: 0 replies naming an item not in the catalog.
2. Down: a server that never answers (each call runs into the timeout) and a closed port,
   cooldown off so every turn pays; the same messages on the embedded conversation are
   the peer. Target: LLM-down turn <= timeout + embedded turn (ratio printed).
Per-turn LLM calls and tokens are printed for the misbehaving and a well-behaved run.

3. Real (--real-base-url): the same simulated users talk to a real server (e.g. llama.cpp
   serving SmolLM2-135M) for --real-turns turns: the share of turns whose understanding,
   plan and reply came from the LLM, fallbacks by cause, 4xx/5xx answers, calls, tokens
   and seconds per turn, replies naming anything outside the catalog. Then the LLM as a
   recommender ("llm") and as a reranker of EASE's top 50 ("llm-rerank") next to
   popularity and EASE on the same --eval-users sampled test users, with paired tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_server import (
    ScriptedLLM,
    drop,
    error,
    garbage,
    helpful,
    json_reply,
    reply,
    request_data,
    request_kind,
    slow,
    tool_reply,
)

FAKE_TITLES = ("The Quantum Heist", "Neon Shadows", "Midnight Over Saturn")


def misbehaving(rng: np.random.Generator, timeout: float):
    """A responder that misbehaves on most requests, in every way the tests name."""

    def respond(body: dict):
        kind, data = request_kind(body), request_data(body)
        roll = rng.random()
        if roll < 0.08:
            return error(429, retry_after=0)
        if roll < 0.14:
            return error(500)
        if roll < 0.19:
            return drop()
        if roll < 0.22:
            return garbage()
        if roll < 0.25:
            return slow(timeout * 3, helpful(body))
        if roll < 0.33:
            return reply('{"intents": ["recommend"], "titles": [')
        if roll < 0.40:
            return json_reply({"intent": "recommend", "movie": FAKE_TITLES[0]})
        if kind == "dialogue_acts" and roll < 0.6:
            fake = FAKE_TITLES[int(rng.integers(len(FAKE_TITLES)))]
            return json_reply(
                {
                    "intents": ["recommend"],
                    "titles": [{"title": fake, "liked": True}],
                    "values": [{"field": "genres", "value": "Cyberpunk Opera", "include": True}],
                    "reference": 42,
                }
            )
        if kind == "plan" and roll < 0.7:
            return tool_reply(
                ("search_catalog", {"include": {"genres": ["Horror"]}, "year_min": 2090}),
                ("explain_item", {"item_id": "no-such-id"}),
                ("rank_for_user", "{broken"),
            )
        if kind == "grounded_reply" and isinstance(data, dict) and roll < 0.85:
            ids = [c["item_id"] for c in data.get("candidates", [])]
            fake = FAKE_TITLES[int(rng.integers(len(FAKE_TITLES)))]
            texts = [
                f'You must see "{fake}" and [[{ids[0] if ids else "1"}]].',
                f"Try {fake} (2031), it is like [[99999999]].",
                "Skip these and watch The Godfather or Pulp Fiction instead.",
            ]
            order = [*ids[::-1], "424242"] if rng.random() < 0.3 else ids
            return json_reply({"order": order, "text": texts[int(rng.integers(len(texts)))]})
        return helpful(body)

    return respond


class Checker:
    """Counts replies that name something the catalog does not hold."""

    def __init__(self, catalog) -> None:
        self.by_year: dict[str, set[str]] = {}
        for title in catalog.titles:
            found = re.search(r"\((\d{4})\)\s*$", title)
            if found:
                self.by_year.setdefault(found.group(1), set()).add(title)
        self.replies = 0
        self.bad: list[str] = []
        self.flagged: list[dict] = []
        """Each flagged reply whole, with where its words came from (to tell a guard gap
        from a misread of this checker)."""

    def check(self, text: str, trace: dict | None = None) -> None:
        self.replies += 1
        problem = any(f in text for f in FAKE_TITLES) or "[[" in text
        for found in re.finditer(r"\((\d{4})\)", text):
            before = text[: found.end()]
            if not any(before.endswith(t) for t in self.by_year.get(found.group(1), ())):
                problem = True
        if problem:
            self.bad.append(text[:200])
            reply = (trace or {}).get("reply") or {}
            self.flagged.append({"text": text, "reply": reply.get("result", "embedded")})


def run_episodes(
    conversation,
    engine,
    turns: int,
    checker: Checker | None,
    seed: int,
    progress: int = 0,
    on_progress=None,
):
    """Language-user episodes until `turns` turns; returns the turns' traces and seconds."""
    from whyrec.evaluation.simulated_users import LanguageUser, run_language_episode

    test = engine.bundle.test.interactions
    rng = np.random.default_rng(seed)
    traces, seconds = [], []
    original_send = type(conversation.start()).send

    def timed_send(session, text):
        started = time.perf_counter()
        turn = original_send(session, text)
        seconds.append(time.perf_counter() - started)
        traces.append(turn.trace.get("llm", {}))
        if progress and len(seconds) % progress == 0:
            print(
                f"  ... {len(seconds)} turns, last {progress}: median "
                f"{statistics.median(seconds[-progress:]):.2f} s, max "
                f"{max(seconds[-progress:]):.2f} s",
                file=sys.stderr,
                flush=True,
            )
            if on_progress is not None:
                on_progress(traces, seconds)
        if checker is not None:
            checker.check(turn.reply, turn.trace.get("llm"))
        return turn

    session_class = conversation.session_class
    conversation.session_class = type("Timed", (session_class,), {"send": timed_send})
    from whyrec.evaluation.simulated_users import Episode

    while len(seconds) < turns:
        row = test.iloc[int(rng.integers(len(test)))]
        user = str(row.user_id)
        episode = Episode(
            user,
            engine.catalog.position(str(row.item_id)),
            tuple(int(p) for p in engine.user_history(user)),
        )
        person = LanguageUser(conversation.scorer.space, engine.catalog, rng)
        run_language_episode(conversation, person, episode, max_turns=8)
    conversation.session_class = session_class
    return traces, seconds


def usage(traces: list[dict]) -> str:
    calls = [t.get("llm_calls", 0) for t in traces]
    tokens = [t.get("tokens", 0) for t in traces]
    fallbacks = sum(bool(t.get("fallbacks")) for t in traces)
    return (
        f"LLM calls/turn mean {np.mean(calls):.2f} (max {max(calls)}), "
        f"tokens/turn mean {np.mean(tokens):.0f} (p95 {np.percentile(tokens, 95):.0f}), "
        f"turns with a fallback {fallbacks}/{len(traces)}"
    )


HTTP_ERRORS = ("rejected", "server_error", "rate_limited")


STRICT = "llm_used_every_step_counting_speed_skips_as_fallbacks"
SPEED_SKIPPED = "not asked (the server's speed left time for the reply only)"


def turn_sources(trace: dict) -> dict[str, str]:
    """Where each step of one turn came from: "llm" (ok/repaired) or the fallback cause."""

    def cause(record: dict | None, calls: list[dict]) -> str:
        if record is None:
            return "not asked"
        result = record.get("result", "")
        if result in ("ok", "repaired"):
            return "llm"
        if result == "empty":
            return "empty reading (embedded used)"
        if record.get("invalid"):
            return "invalid output"
        outcomes = {c["outcome"] for c in calls if c["purpose"] == record.get("purpose")}
        for late in ("timeout", "out_of_time"):
            if late in outcomes:
                return late
        return f"unavailable ({','.join(outcomes)})"

    calls = trace.get("calls", [])
    plan = trace.get("plan")
    plan_source = "not asked"
    if plan is not None and plan.get("not_asked"):
        plan_source = SPEED_SKIPPED
    elif plan is not None:
        plan_source = "llm" if not str(plan.get("result", "")).startswith("no plan") else "no plan"
        if plan_source == "no plan":
            structured = (plan.get("structured") or [None])[-1]
            plan_source = cause(structured, calls) if structured else "no plan (tools)"
    return {
        "understanding": cause(trace.get("understanding"), calls),
        "plan": plan_source,
        "reply": cause(trace.get("reply"), calls),
    }


def real_chat(engine, config, turns: int, seed: int, partial: Path | None = None) -> dict:
    """Simulated users talking to the real server; prints the figures of the issue (and
    writes them to `partial` every ten turns, so a long run's figures so far are kept)."""
    from whyrec.llm import open_conversation

    checker = Checker(engine.catalog)
    conversation = open_conversation(engine, llm=config, wish_scorer=None)

    def keep(traces, seconds):
        if partial is not None:
            figures = chat_figures(traces, seconds, checker, config)
            partial.write_text(json.dumps({"partial": figures}, indent=1, default=str) + "\n")

    traces, seconds = run_episodes(
        conversation, engine, turns, checker, seed, progress=10, on_progress=keep
    )
    figures = chat_figures(traces, seconds, checker, config)
    print_chat(figures, config, checker)
    return figures


def chat_figures(traces: list[dict], seconds: list[float], checker: Checker, config) -> dict:
    """The issue's figures for real chat turns, with the traces of turns over budget."""
    from collections import Counter

    sources = [turn_sources(t) for t in traces]
    used = sum(all(v in ("llm", "not asked", SPEED_SKIPPED) for v in s.values()) for s in sources)
    strict = sum(all(v in ("llm", "not asked") for v in s.values()) for s in sources)
    any_used = sum(any(v == "llm" for v in s.values()) for s in sources)
    causes = Counter(f"{step}: {v}" for s in sources for step, v in s.items() if v != "llm")
    errors = Counter(
        e
        for t in traces
        for c in t.get("calls", [])
        for e in c.get("errors", [])
        if e.split(" ")[0] in HTTP_ERRORS
    )
    negotiated = sum(bool(c.get("dialect")) for t in traces for c in t.get("calls", []))
    calls = [t.get("llm_calls", 0) for t in traces]
    tokens = [t.get("tokens", 0) for t in traces]
    over = [s for s in seconds if s > config.timeout + 1.0]
    unknown_ids = sum("[[" in text for text in checker.bad)
    steps = {}
    for step in ("understanding", "plan", "reply"):
        asked = [s[step] for s in sources if s[step] != "not asked"]
        steps[step] = {"from_llm": sum(v == "llm" for v in asked), "asked": len(asked)}
    figures = {
        "model": config.model,
        "timeout_s": config.timeout,
        "turns": len(traces),
        "dialect": traces[-1].get("dialect"),
        "llm_used_every_step": used,
        STRICT: strict,
        "llm_used_any_step": any_used,
        "steps": steps,
        "fallbacks": dict(causes.most_common()),
        "http_errors": dict(errors),
        "negotiating_calls": negotiated,
        "calls_per_turn": {"mean": round(float(np.mean(calls)), 3), "max": int(max(calls))},
        "tokens_per_turn": {
            "mean": round(float(np.mean(tokens)), 1),
            "p95": round(float(np.percentile(tokens, 95)), 1),
        },
        "turn_seconds": {
            "p50": round(float(np.percentile(seconds, 50)), 3),
            "p95": round(float(np.percentile(seconds, 95)), 3),
            "max": round(float(max(seconds)), 3),
            "over_timeout_plus_1s": len(over),
        },
        "replies": checker.replies,
        "replies_outside_catalog": len(checker.bad),
        "unknown_ids": unknown_ids,
        "flagged_replies": checker.flagged,
        "load_average": list(os.getloadavg()),
        "over_budget_traces": [
            {"seconds": round(s, 3), **{k: t.get(k) for k in OVER_BUDGET_KEYS}}
            for s, t in zip(seconds, traces, strict=True)
            if s > config.timeout + 1.0
        ],
    }
    return figures


OVER_BUDGET_KEYS = ("seconds", "own_work_kept", "tail_kept", "calls", "fallbacks", "plan")


def print_chat(figures: dict, config, checker: Checker) -> None:
    f = figures
    turns = f["turns"]

    def share(n: int) -> str:
        return f"{n}/{turns} ({n / turns:.0%})"

    seconds, tokens, calls = f["turn_seconds"], f["tokens_per_turn"], f["calls_per_turn"]
    print(
        f"real LLM {config.model} at {config.endpoint}: {turns} turns, timeout "
        f"{config.timeout:g}s, dialect {f['dialect']}, load average {f['load_average']}"
    )
    print(
        f"  LLM output used in every step asked: {share(f['llm_used_every_step'])}; the "
        f"same with a plan skipped for speed counted as a fallback: {share(f[STRICT])}; in "
        f"at least one step: {share(f['llm_used_any_step'])}"
    )
    for step, counts in f["steps"].items():
        print(f"  {step}: from the LLM in {counts['from_llm']}/{counts['asked']} turns asked")
    print("  fallbacks by cause: " + ", ".join(f"{k} {v}" for k, v in f["fallbacks"].items()))
    print(
        f"  4xx/5xx answers: {sum(f['http_errors'].values())} {f['http_errors']} (calls that "
        f"negotiated the dialect: {f['negotiating_calls']})"
    )
    print(
        f"  calls/turn mean {calls['mean']:.2f} (max {calls['max']}), tokens/turn mean "
        f"{tokens['mean']:.0f} (p95 {tokens['p95']:.0f})"
    )
    print(
        f"  turn seconds p50 {seconds['p50']:.2f}, p95 {seconds['p95']:.2f}, max "
        f"{seconds['max']:.2f}; over timeout + 1 s: {seconds['over_timeout_plus_1s']}"
    )
    print(
        f"  replies naming something outside the catalog: {f['replies_outside_catalog']} of "
        f"{f['replies']} (unknown [[ids]] left: {f['unknown_ids']})"
    )
    for text in checker.bad[:5]:
        print(f"    e.g. {text!r}")


def real_recommenders(config, users: int, seed: int) -> dict:
    """pop, EASE, llm and llm-rerank on the same sampled users of ml-latest-small."""
    from whyrec.data.loaders import load_dataset
    from whyrec.data.splits import split
    from whyrec.evaluation.protocol import evaluate_models
    from whyrec.llm.recommender import LLMRecommender, LLMReranker
    from whyrec.models import EASE, Popularity

    held = split(load_dataset("ml-latest-small"), "loo", seed=seed)
    models = {
        "popularity": Popularity(),
        "ease": EASE(reg=250.0),
        "llm": LLMRecommender().use_llm(config),
        "llm-rerank": LLMReranker(seed=seed).use_llm(config),
    }
    report = evaluate_models(models, held, [10], seed=seed, max_users=users)
    data = report.to_dict()
    print(
        f"recommenders on ml-latest-small, loo split, {users} sampled test users "
        f"(of {data['split']['sampled_users']['of']}), k=10, mean [95% CI]:"
    )
    for name, result in data["models"].items():
        ndcg, hr = result["metrics"]["ndcg@10"], result["metrics"]["hr@10"]
        extra = ""
        if "llm" in result:
            s = result["llm"]
            extra = (
                f"  parsed {s['parsed']:.0%}, {s['titles']} answers: hallucinated "
                f"{s['hallucinated']:.0%}, "
                f"repeated {s['repeated']:.0%}, {s['calls']} calls, {s['tokens']} tokens, "
                f"{s['seconds']:.0f} s"
            )
        print(
            f"  {name:11s} ndcg@10 {ndcg['mean']:.4f} [{ndcg['ci95'][0]:.4f}, "
            f"{ndcg['ci95'][1]:.4f}]  hr@10 {hr['mean']:.3f}{extra}"
        )
    for row in data["significance"]:
        if row["metric"] == "ndcg@10":
            print(
                f"  paired ndcg@10 {row['model_a']} - {row['model_b']}: "
                f"{row['mean_difference']:+.4f} (t-test p {row['t_pvalue']}, "
                f"Wilcoxon p {row['wilcoxon_pvalue']})"
            )
    return {
        "users": users,
        "of_users": data["split"]["sampled_users"]["of"],
        "models": {
            name: {
                "ndcg@10": result["metrics"]["ndcg@10"],
                "hr@10": result["metrics"]["hr@10"],
                **({"llm": result["llm"]} if "llm" in result else {}),
            }
            for name, result in data["models"].items()
        },
        "significance": [row for row in data["significance"] if row["metric"] == "ndcg@10"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--down-turns", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-base-url", help="A real OpenAI-compatible server: part 3 only.")
    parser.add_argument("--real-model", default="smollm2")
    parser.add_argument("--real-turns", type=int, default=200)
    parser.add_argument("--real-timeout", type=float, default=20.0)
    parser.add_argument("--eval-users", type=int, default=40)
    parser.add_argument(
        "--eval-timeout",
        type=float,
        default=60.0,
        help="Seconds per LLM recommender call (offline scoring, not a chat turn).",
    )
    parser.add_argument("--json", type=Path, help="Also write part 3's figures here.")
    args = parser.parse_args()

    from whyrec.bundle import Bundle
    from whyrec.conversation import Conversation
    from whyrec.data.loaders import load_dataset
    from whyrec.data.splits import split
    from whyrec.engine import Engine
    from whyrec.llm import LLMConfig, open_conversation
    from whyrec.models import EASE

    held = split(load_dataset("ml-latest-small"), "user-temporal", seed=0)
    engine = Engine(Bundle(EASE(reg=250.0).fit(held.train), held.train, test=held.test))
    rng = np.random.default_rng(args.seed)
    if args.real_base_url:
        real = LLMConfig(
            base_url=args.real_base_url,
            model=args.real_model,
            timeout=args.real_timeout,
            max_tokens=300,
            cooldown=0,
        )
        result: dict = {"command": " ".join(sys.argv[1:])}
        if args.real_turns:
            partial = args.json.with_suffix(".partial.json") if args.json else None
            result["chat"] = real_chat(engine, real, args.real_turns, args.seed, partial)
        if args.eval_users:
            offline = real.model_copy(update={"timeout": args.eval_timeout})
            result["recommenders"] = real_recommenders(offline, args.eval_users, args.seed)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
        return

    def config(server_url: str) -> LLMConfig:
        return LLMConfig(
            base_url=server_url, model="bench", timeout=args.timeout, backoff=0.02, cooldown=0
        )

    # 1. misbehaving on every request
    checker = Checker(engine.catalog)
    with ScriptedLLM(misbehaving(rng, args.timeout)) as server:
        conversation = open_conversation(engine, llm=config(server.base_url), wish_scorer=None)
        conversation.client._cache.clear()
        traces, seconds = run_episodes(conversation, engine, args.turns, checker, args.seed)
        requests = len(server.requests)
    print(f"misbehaving LLM: {len(traces)} turns, {requests} requests, timeout {args.timeout}s")
    print(f"  replies naming an item not in the catalog: {len(checker.bad)} of {checker.replies}")
    for text in checker.bad[:5]:
        print(f"    e.g. {text!r}")
    print(f"  {usage(traces)}")
    print(
        f"  turn seconds median {statistics.median(seconds):.3f}, max {max(seconds):.3f} "
        f"(limit timeout + embedded)"
    )
    with ScriptedLLM(helpful) as server:
        conversation = open_conversation(engine, llm=config(server.base_url), wish_scorer=None)
        traces, _ = run_episodes(conversation, engine, min(300, args.turns), None, args.seed)
    print(f"well-behaved LLM: {len(traces)} turns; {usage(traces)}")

    # 2. down: hanging server and closed port, against the embedded peer on the same turns
    embedded = Conversation(engine, wish_scorer=None)
    _, peer = run_episodes(embedded, engine, args.down_turns, None, args.seed + 1)
    for name in ("hanging", "refused"):
        server = ScriptedLLM(lambda body: slow(3600, error(500))).start()
        url = server.base_url
        if name == "refused":
            server.stop()
        conversation = open_conversation(engine, llm=config(url), wish_scorer=None)
        traces, down = run_episodes(conversation, engine, args.down_turns, None, args.seed + 1)
        if name == "hanging":
            server.stop()
        n = min(len(down), len(peer))
        ratios = [down[i] / (args.timeout + peer[i]) for i in range(n)]
        print(
            f"LLM down ({name}): {n} turns, turn median {statistics.median(down):.3f}s vs "
            f"embedded {statistics.median(peer):.3f}s; turn / (timeout + embedded turn): "
            f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f} (target <= 1)"
        )


if __name__ == "__main__":
    main()
