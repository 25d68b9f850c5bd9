"""Benchmark every registered model on full ml-latest-small under the whyrec protocol.

Usage (offline: WHYREC_DATA_DIR pointing at a folder with ml-latest-small/):

    python benchmarks/bench_models.py                       # user-temporal split
    python benchmarks/bench_models.py --split loo --models ease,ials

Prints nDCG@10 and Recall@20 (mean over test users, 95% t-interval) with fit and
scoring seconds, so a change to a model or to the protocol shows up as a number.
"""

from __future__ import annotations

import argparse
import time

from whyrec.data.loaders import load_dataset
from whyrec.data.splits import split
from whyrec.evaluation.protocol import EvaluationTarget, evaluate_model
from whyrec.models import MODELS, model_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--split", default="user-temporal")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    dataset = load_dataset(args.data)
    data_split = split(dataset, args.split, seed=args.seed)
    target = EvaluationTarget.from_split(data_split)
    print(
        f"{dataset.name}: {len(dataset):,} interactions, split {data_split.describe()}, "
        f"{len(target.users):,} test users (prepared in {time.perf_counter() - started:.1f}s)"
    )
    print(f"{'model':<12}{'nDCG@10':>18}{'Recall@20':>18}{'fit s':>9}{'score s':>9}")
    for name in args.models.split(","):
        cls = model_class(name)
        params = {"seed": args.seed} if "seed" in cls.Config.model_fields else {}
        result = evaluate_model(name, cls(**params), data_split, [10, 20], target=target)
        cells = []
        for key in ("ndcg@10", "recall@20"):
            summary = result.summary[key]
            half = (summary.ci95[1] - summary.ci95[0]) / 2
            cells.append(f"{summary.mean:.4f} ± {half:.4f}")
        print(
            f"{cls.name:<12}{cells[0]:>18}{cells[1]:>18}"
            f"{result.fit_seconds:>9.2f}{result.score_seconds:>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
