"""Neural models against popularity on ml-latest-small, leave-last-one-out by time.

Full ranking over every item the user has not interacted with in training (DESIGN.md
section 4); binary relevance; HR@10 and nDCG@10 averaged over test users. Prints fit
seconds too, because CPU-friendliness is part of what the defaults promise.

    WHYREC_DATA_DIR=../shared/data/movielens .venv/bin/python benchmarks/bench_neural.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_directory
from whyrec.data.splits import split
from whyrec.models import model_class
from whyrec.models.base import Recommender

K = 10
RARE = 5
"""Test items with fewer training interactions than this form the "rare" slice (cold-ish)."""


def loo_metrics(model: Recommender, train: Dataset, test: Dataset) -> dict[str, float]:
    """HR@K and nDCG@K for a split with one held-out item per test user (full ranking)."""
    histories = train.histories()
    test_rows, test_items = test.codes
    seen = train.matrix
    hits, gains = [], []
    for start in range(0, len(test_rows), 256):
        rows, targets = test_rows[start : start + 256], test_items[start : start + 256]
        scores = model.score([histories[r] for r in rows]).astype(np.float64)
        block = seen[rows]
        scores[block.nonzero()] = -np.inf
        target_scores = scores[np.arange(len(rows)), targets]
        # Rank = items scored strictly higher (a -inf target ranks last).
        ranks = (scores > target_scores[:, None]).sum(axis=1)
        ranks = np.where(np.isfinite(target_scores), ranks, scores.shape[1])
        hits.append(ranks < K)
        gains.append(np.where(ranks < K, 1.0 / np.log2(ranks + 2.0), 0.0))
    rare = train.item_popularity()[test_items] < RARE
    all_gains = np.concatenate(gains)
    return {
        f"HR@{K}": float(np.concatenate(hits).mean()),
        f"nDCG@{K}": float(all_gains.mean()),
        "rare_users": int(rare.sum()),
        f"rare nDCG@{K}": float(all_gains[rare].mean()) if rare.any() else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="popularity,text,sasrec,sasrec-text")
    parser.add_argument("--params", default="{}", help='JSON: {"sasrec": {"epochs": 5}}')
    args = parser.parse_args()
    data_dir = Path(os.environ.get("WHYREC_DATA_DIR", "../shared/data/movielens"))
    dataset = load_directory(data_dir / "ml-latest-small", name="ml-latest-small")
    parts = split(dataset, "loo", seed=42)
    params = json.loads(args.params)
    print(f"ml-latest-small, loo split (seed 42), {parts.test.n_users} users, full ranking")
    print("fit s = wall clock; cpu s = process CPU time (the machine may be shared)")
    print(f"rare = test items with < {RARE} training interactions")
    print(f"{'model':<14}{'fit s':>8}{'cpu s':>8}{'HR@10':>9}{'nDCG@10':>9}{'rare nDCG@10':>14}")
    for name in args.models.split(","):
        model = model_class(name)(**params.get(name, {}))
        started, cpu_started = time.perf_counter(), time.process_time()
        model.fit(parts.train)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        metrics = loo_metrics(model, parts.train, parts.test)
        rare_users = metrics["rare_users"]
        stopped = getattr(model, "best_epoch_", None)
        print(
            f"{name:<14}{seconds:>8.1f}{cpu_seconds:>8.1f}"
            f"{metrics['HR@10']:>9.4f}{metrics['nDCG@10']:>9.4f}{metrics['rare nDCG@10']:>14.4f}"
            + (f"  (best epoch {stopped} of {len(model.history_)})" if stopped else "")
        )
    print(f"rare slice: {rare_users} test users")


if __name__ == "__main__":
    main()
