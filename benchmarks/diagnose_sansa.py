"""Where SANSA's accuracy gap to EASE comes from, on the split and users bench_peers uses.

Usage:
    python benchmarks/diagnose_sansa.py --split user-temporal --settings \
        '{"weights_per_item": 200}' '{"weights_per_item": 200, "objective": "ease", "reg": 250}'
    python benchmarks/diagnose_sansa.py --split loo --ceiling 10,1

--settings: SANSA fits (any `--param`s as JSON) against EASE (reg 250), each printed as
nDCG@10 and Recall@20 with the paired ratio and its 95% bootstrap interval, plus fit
wall/CPU seconds. --ceiling λ,…: the package's model (`objective="package"`) at full
density, computed densely: the norm-scaled Gram S⁻¹·G·S⁻¹ + λ·I inverted exactly, scaling
kept. What no target density can exceed, so it separates the model's gap from the sparse
approximation's.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from bench_peers import evaluate, load_split, paired_ratio
from whyrec.models import EASE, SANSA


def show(label: str, result: dict, base: dict, extra: str = "") -> None:
    for key in ("ndcg@10", "recall@20"):
        row = paired_ratio(np.asarray(result["per_user"][key]), np.asarray(base["per_user"][key]))
        low, high = row["ratio_interval"]
        print(f"{label} {key} {result[key]:.4f} vs EASE {base[key]:.4f}: ratio "
              f"{row['ratio']:.3f} [{low:.3f}, {high:.3f}]{extra}", flush=True)  # fmt: skip


def package_model_weights(matrix: sp.csr_matrix, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """(active items, dense B) of the package's model at full density."""
    active = np.flatnonzero(np.diff(matrix.tocsc().indptr))
    by_item = matrix[:, active]
    gram = (by_item.T @ by_item).toarray()
    scale = np.sqrt(np.sqrt(np.square(gram, dtype=np.float64).sum(axis=1))).astype(np.float32)
    gram /= scale[:, None] * scale[None, :]
    gram[np.diag_indices_from(gram)] += reg
    inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return active, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--split", default="user-temporal")
    parser.add_argument("--settings", nargs="*", default=[])
    parser.add_argument("--ceiling", default="", help="λ values of the dense package model")
    args = parser.parse_args()
    the_split, target = load_split(args.data, args.split)
    ease = EASE(reg=250.0).fit(the_split.train)
    base = evaluate(lambda a, b: ease.score(target.histories[a:b]), target)
    for text in args.settings:
        params = json.loads(text)
        wall, cpu = time.perf_counter(), time.process_time()
        model = SANSA(**params).fit(the_split.train)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = evaluate(lambda a, b, m=model: m.score(target.histories[a:b]), target)
        show(f"{args.split} sansa {params}", result, base, f", fit {wall:.0f} s ({cpu:.0f} CPU s)")
    matrix = sp.csr_matrix(the_split.train.matrix, dtype=np.float32)
    for reg in [float(x) for x in args.ceiling.split(",") if x]:
        active, weights = package_model_weights(matrix, reg)

        def score(start: int, stop: int, active=active, weights=weights) -> np.ndarray:
            rows = np.zeros((stop - start, matrix.shape[1]), dtype=np.float32)
            for row, history in enumerate(target.histories[start:stop]):
                rows[row, history] = 1.0
            out = np.full_like(rows, -np.inf)
            out[:, active] = rows[:, active] @ weights
            return out

        show(f"{args.split} package model, full density, reg {reg:g}", evaluate(score, target),
             base)  # fmt: skip


if __name__ == "__main__":
    main()
