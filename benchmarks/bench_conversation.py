"""Conversation: turn latency of the embedded engine and simulated-user results.

    python benchmarks/bench_conversation.py [--episodes 1000] [--skip-simulation]

Latency: median and p95 of one full turn (understand + score + explain + reply + store)
over a scripted set of messages. Simulation: every policy on the same episodes of the
loo holdout of ml-latest-small, attribute and language users, with 95% intervals.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

MESSAGES = [
    "a funny animated film from the 90s, like Toy Story, nothing scary",
    "why the second one?",
    "not that one",
    "none of these",
    "yes",
    "something mind-bending after 2010",
    "I hated Titanic but loved The Matrix",
    "more like the first one",
    "no horror or thriller please",
    "start over",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument(
        "--split", default="user-temporal", help="held-out targets (loo has one a user)"
    )
    parser.add_argument("--skip-simulation", action="store_true")
    args = parser.parse_args()

    from whyrec.bundle import Bundle
    from whyrec.conversation import Conversation
    from whyrec.data.loaders import load_dataset
    from whyrec.data.splits import split
    from whyrec.engine import Engine
    from whyrec.evaluation.conversational import simulate
    from whyrec.evaluation.simulated_users import episodes_from_targets
    from whyrec.models import EASE

    held = split(load_dataset(args.data), args.split, seed=0)
    engine = Engine(Bundle(EASE(reg=250.0).fit(held.train), held.train, test=held.test))
    conversation = Conversation(engine)
    times = []
    for user in list(engine.bundle.train.user_ids[:20]) + [None] * 10:
        session = conversation.start(user)
        for message in MESSAGES:
            started = time.perf_counter()
            session.send(message)
            times.append(time.perf_counter() - started)
    times_ms = np.array(times) * 1000
    print(
        f"turn latency over {len(times)} turns: median {statistics.median(times_ms):.1f} ms, "
        f"p95 {np.percentile(times_ms, 95):.1f} ms, max {times_ms.max():.1f} ms"
    )
    if args.skip_simulation:
        return
    episodes = episodes_from_targets(
        engine, held.test.interactions, args.episodes, np.random.default_rng(0)
    )
    policies = ["ours", "recommend-only", "max-entropy", "random"]
    summary = {}
    for mode in ("attribute", "language"):
        started = time.perf_counter()
        report = simulate(engine, episodes, policies, user_mode=mode)
        print(f"\n{mode} users, {len(episodes)} episodes ({time.perf_counter() - started:.0f}s)")
        print(
            f"{'policy':>15} {'SR@5':>7} {'SR@10':>7} {'SR@15 [95% CI]':>22} {'AT [95% CI]':>22}"
            f" {'hDCG':>6}"
        )
        for name, result in report["policies"].items():
            rates, ci = result["success_rate_at"], result["ci95"]
            sr_ci = ci["success_rate_at"]["15"]
            at_ci = ci["average_turns"]
            print(
                f"{name:>15} {rates['5']:7.3f} {rates['10']:7.3f} "
                f"{rates['15']:7.3f} [{sr_ci[0]:.3f},{sr_ci[1]:.3f}] "
                f"{result['average_turns']:7.2f} [{at_ci[0]:.2f},{at_ci[1]:.2f}] "
                f"{result['hdcg']:6.3f}"
            )
        for name, diff in report["paired_vs_ours"].items():
            print(
                f"{'ours - ' + name:>24}: SR@15 {diff['sr@15_diff']:+.3f} "
                f"[{diff['sr@15_diff_ci95'][0]:+.3f},{diff['sr@15_diff_ci95'][1]:+.3f}], "
                f"AT {diff['average_turns_diff']:+.2f} [{diff['average_turns_diff_ci95'][0]:+.2f},"
                f"{diff['average_turns_diff_ci95'][1]:+.2f}] (paired)"
            )
        summary[mode] = report["policies"]["ours"]["success_rate_at"]["15"]
    print(
        f"\nlanguage minus attribute SR@15 (ours): "
        f"{(summary['language'] - summary['attribute']) * 100:+.1f} points"
    )


if __name__ == "__main__":
    main()
