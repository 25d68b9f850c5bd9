"""What does explaining a top-10 list cost, next to producing it? EASE on ml-latest-small.

Times `Engine.recommend(explain=False)` (score + filter + top-k) against
`Engine.recommend(explain=True)` (the same plus a full `Explanation` per item: exact
contributions, attribute paths, constraint checks, co-interaction counts, confidence)
and `Engine.explain` for a why-not item, over a seeded sample of users. Prints median
milliseconds and the ratio.

    WHYREC_DATA_DIR=../shared/data/movielens .venv/bin/python benchmarks/bench_explain.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from whyrec.bundle import Bundle
from whyrec.data.loaders import load_dataset
from whyrec.engine import Engine
from whyrec.models import EASE


def median_ms(action, repeats: int) -> float:
    """Median wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--kcore", type=int, default=None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dataset = load_dataset(args.data, source=args.source, kcore=args.kcore)
    started = time.perf_counter()
    model = EASE().fit(dataset)
    print(
        f"{dataset.name}: {len(dataset):,} interactions; "
        f"EASE fit {time.perf_counter() - started:.1f}s"
    )
    engine = Engine(Bundle(model, dataset))
    rng = np.random.default_rng(args.seed)
    users = rng.choice(dataset.user_ids, size=min(args.users, dataset.n_users), replace=False)
    histories = {u: engine.user_history(u) for u in users}
    engine.recommend(histories[users[0]], k=args.k)  # build the explainer (graph) once

    plain, explained, why_not = [], [], []
    for user in users:
        history = histories[user]
        plain.append(
            median_ms(lambda h=history: engine.recommend(h, k=args.k, explain=False), args.repeats)
        )
        explained.append(
            median_ms(
                lambda h=history, u=user: engine.recommend(h, k=args.k, explain=True, user_id=u),
                args.repeats,
            )
        )
        outside = engine.recommend(history, k=args.k + 40, explain=False)[-1].position
        why_not.append(
            median_ms(
                lambda h=history, i=outside, u=user: engine.explain(h, i, k=args.k, user_id=u),
                args.repeats,
            )
        )
    lengths = [len(h) for h in histories.values()]
    plain_ms, explained_ms = statistics.median(plain), statistics.median(explained)
    print(f"{len(users)} users (history median {statistics.median(lengths):.0f} items), k={args.k}")
    print(f"recommend top-{args.k}, no explanations: {plain_ms:8.2f} ms (median)")
    print(f"recommend top-{args.k}, explained:       {explained_ms:8.2f} ms (median)")
    print(f"  explaining alone:                    {explained_ms - plain_ms:8.2f} ms")
    print(
        f"why-not for one item (rank {args.k + 40}):   "
        f"{statistics.median(why_not):8.2f} ms (median)"
    )
    print(f"ratio explained / plain: {explained_ms / plain_ms:.2f}x")


if __name__ == "__main__":
    main()
