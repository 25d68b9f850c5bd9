"""EASE fit time and peak memory against a plain float64 `numpy.linalg.inv` baseline.

Each variant runs in its own child process so peak RSS is its own; the parent prints
medians and ratios. Also measures what `whyrec recommend` spends its start-up on.

    python benchmarks/bench_ease.py [--data ml-latest-small] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, data: str, reg: float) -> dict:
    from whyrec.data.loaders import load_dataset
    from whyrec.models.ease import EASE

    dataset = load_dataset(data)
    matrix = dataset.matrix
    before = _peak_rss_mib()
    started = time.perf_counter()
    if variant == "ours":
        EASE(reg=reg).fit(dataset)
    else:  # the textbook version: dense float64 Gram over every catalog item, general inverse
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += reg
        inverse = np.linalg.inv(gram)
        weights = inverse / -np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mib": _peak_rss_mib(), "data_mib": before}


def run_child(variant: str, data: str, reg: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--data", data, "--reg", str(reg)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup_breakdown(data: str) -> dict:
    """Seconds for imports, bundle load and one recommendation, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "b"
        subprocess.run(
            [sys.executable, "-m", "whyrec.cli", "train", "--data", data, "--out", str(bundle)],
            check=True,
            capture_output=True,
        )
        code = f"""
import time, json, statistics
t0 = time.perf_counter()
import whyrec.cli, whyrec.engine, whyrec.bundle
t1 = time.perf_counter()
from whyrec.bundle import Bundle
from whyrec.engine import Engine
engine = Engine(Bundle.load({str(bundle)!r}))
t2 = time.perf_counter()
users = list(engine.bundle.train.user_ids[:50])
times = []
for u in users:
    s = time.perf_counter()
    engine.recommend(engine.user_history(u), k=10)
    times.append(time.perf_counter() - s)
print(json.dumps({{"imports": t1 - t0, "bundle_load": t2 - t1, "first_recommend": times[0],
                  "median_recommend": statistics.median(times[1:])}}))
"""
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--reg", type=float, default=250.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.reg)))
        return
    results = {}
    for variant, repeats in (("ours", args.repeats), ("numpy-inv-f64", args.baseline_repeats)):
        runs = [run_child(variant, args.data, args.reg) for _ in range(repeats)]
        results[variant] = {
            "median_seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mib": statistics.median(r["peak_mib"] for r in runs),
            "data_mib": statistics.median(r["data_mib"] for r in runs),
            "runs": len(runs),
        }
        print(
            f"{variant:>14}: fit {results[variant]['median_seconds']:.2f}s (median of "
            f"{len(runs)}), peak RSS {results[variant]['peak_mib']:.0f} MiB "
            f"(after loading data: {results[variant]['data_mib']:.0f} MiB)"
        )
    ours, base = results["ours"], results["numpy-inv-f64"]
    print(
        f"fit time ratio ours/baseline: {ours['median_seconds'] / base['median_seconds']:.3f} "
        f"({base['median_seconds'] / ours['median_seconds']:.1f}x faster)"
    )
    extra_ours = ours["peak_mib"] - ours["data_mib"]
    extra_base = base["peak_mib"] - base["data_mib"]
    print(
        f"peak memory ratio ours/baseline: {ours['peak_mib'] / base['peak_mib']:.3f} "
        f"(fit's own memory: {extra_ours:.0f} vs {extra_base:.0f} MiB)"
    )
    startup = startup_breakdown(args.data)
    print("recommend start-up: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in startup.items()))


if __name__ == "__main__":
    main()
