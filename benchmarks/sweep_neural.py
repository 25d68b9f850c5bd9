"""Hyper-parameter sweep of the neural models on ml-latest-small (leave-last-one-out).

Each configuration trains in its own process (`--workers` at once, `--threads` torch
threads each), so a many-core machine runs a whole grid in the time of one fit. Choice is
made on validation only: SASRec holds out every user's last *training* item for early
stopping, and its best validation nDCG@10 is what the table is sorted by; the test
columns are printed for information, never used to choose.

    WHYREC_DATA_DIR=../shared/data/movielens python benchmarks/sweep_neural.py \
        --grid '{"sasrec": [{}, {"windows": "all"}]}' --workers 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from bench_neural import loo_metrics


def run_one(job: tuple[str, dict, int]) -> dict:
    """Fit one configuration and measure it; runs in a child process."""
    name, params, threads = job
    os.environ["WHYREC_TORCH_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from whyrec.data.loaders import load_directory
    from whyrec.data.splits import split
    from whyrec.models import model_class

    data_dir = Path(os.environ.get("WHYREC_DATA_DIR", "../shared/data/movielens"))
    dataset = load_directory(data_dir / "ml-latest-small", name="ml-latest-small")
    parts = split(dataset, "loo", seed=42)
    model = model_class(name)(**params)
    started = time.perf_counter()
    model.fit(parts.train)
    seconds = time.perf_counter() - started
    history = getattr(model, "history_", [])
    return {
        "model": name,
        "params": params,
        "fit_seconds": round(seconds, 1),
        "best_epoch": getattr(model, "best_epoch_", None),
        "epochs_run": len(history),
        "val_ndcg@10": max((h.get("val_ndcg", 0.0) for h in history), default=None),
        **loo_metrics(model, parts.train, parts.test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", required=True, help='JSON {"model": [params, ...]}')
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="Write the rows here.")
    args = parser.parse_args()
    grid = json.loads(args.grid)
    jobs = [(name, params, args.threads) for name, configs in grid.items() for params in configs]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for done in as_completed([pool.submit(run_one, job) for job in jobs]):
            row = done.result()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:  # rewritten as results arrive, so a cut-off run keeps them
                args.json.write_text(json.dumps(rows, indent=1))
    rows.sort(key=lambda r: -(r["val_ndcg@10"] or 0.0))
    print(f"\n{'model':<12}{'val nDCG':>9}{'HR@10':>8}{'nDCG@10':>9}{'fit s':>8}  params")
    for row in rows:
        val = row["val_ndcg@10"]
        print(
            f"{row['model']:<12}{(val or 0.0):>9.4f}{row['HR@10']:>8.4f}"
            f"{row['nDCG@10']:>9.4f}{row['fit_seconds']:>8.1f}  {json.dumps(row['params'])}"
        )


if __name__ == "__main__":
    main()
