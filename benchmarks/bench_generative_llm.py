"""The LLM backbone (generative-llm) against the transformer backbone (generative), small scale.

ml-latest-small, the loo split of bench_generative.py (seed 42, the latest item of each
user held out), on a random subset of test users: both models generate the top-10 by
constrained beam search (beam 20) from the user's training history, and HR@10 / nDCG@10
of the held-out item are compared per user (paired 95% interval). The same index (the
default hybrid RQ-VAE, seed 42) serves both; the script checks that the codes agree.
The LLM untuned (steps = 0: its new index tokens untrained) is the floor.

CPU only, one torch thread, meant to run niced; the LLM tunes for `--steps` batches
(a few hundred at most on a CPU), far less than LC-Rec's epochs on a GPU, so the figures
describe this small-scale setting only:

    WHYREC_DATA_DIR=/work/shared/data/movielens WHYREC_LLM_GGUF=model.gguf nice -n 15 \\
        .venv/bin/python benchmarks/bench_generative_llm.py --users 100 --steps 200 \\
        --json benchmarks/results/generative_llm.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from whyrec.bundle import Bundle
from whyrec.data.loaders import load_directory
from whyrec.data.splits import split
from whyrec.evaluation.protocol import EvaluationTarget
from whyrec.evaluation.statistics import t_interval
from whyrec.models.generative import Generative
from whyrec.models.generative.llm_backbone import GenerativeLLM


def beam_metrics(model: Generative, histories: list[np.ndarray], held_out: list[int]) -> dict:
    """Per-user HR@10 and nDCG@10 of the beam's top-10, and the generation time."""
    hits, gains, seconds = [], [], []
    for history, item in zip(histories, held_out, strict=True):
        started = time.thread_time()
        positions = model.generate(history, k=10, beam=20).positions.tolist()
        seconds.append(time.thread_time() - started)
        rank = positions.index(item) if item in positions else None
        hits.append(0.0 if rank is None else 1.0)
        gains.append(0.0 if rank is None else 1.0 / np.log2(rank + 2))
    return {
        "hr@10": np.array(hits),
        "ndcg@10": np.array(gains),
        "generation_cpu_ms_median": float(np.median(seconds) * 1000),
    }


def summary(values: dict) -> dict:
    return {
        key: (float(np.mean(value)) if isinstance(value, np.ndarray) else value)
        for key, value in values.items()
    }


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    low, high = t_interval(a - b)
    return {"mean": float(np.mean(a - b)), "low": low, "high": high}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100, help="random test users")
    parser.add_argument("--steps", type=int, default=200, help="LLM tuning steps")
    parser.add_argument("--params", default="{}", help="JSON of further generative-llm params")
    parser.add_argument(
        "--transformer-bundle",
        type=Path,
        default=None,
        help="a saved default generative bundle on this split (else one is fitted)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = Path(os.environ.get("WHYREC_DATA_DIR", "../shared/data/movielens"))
    dataset = load_directory(data_dir / "ml-latest-small", name="ml-latest-small")
    parts = split(dataset, "loo", seed=42)
    target = EvaluationTarget.from_split(parts)
    rows = np.random.default_rng(0).choice(len(target.users), args.users, replace=False)
    histories = [np.asarray(target.histories[r], dtype=np.int64) for r in np.sort(rows)]
    held_out = [int(target.relevant[r].indices[0]) for r in np.sort(rows)]
    report: dict = {
        "protocol": f"ml-latest-small loo (seed 42), {args.users} random test users, "
        "beam 20 top-10, CPU, one torch thread",
        "models": {},
    }

    if args.transformer_bundle:
        transformer = Bundle.load(args.transformer_bundle).model
        fit_cpu = None
    else:
        started = time.process_time()
        transformer = Generative().fit(parts.train)
        fit_cpu = time.process_time() - started
    scores = {"generative": beam_metrics(transformer, histories, held_out)}
    report["models"]["generative"] = {**summary(scores["generative"]), "fit_cpu_s": fit_cpu}
    print("generative", report["models"]["generative"], flush=True)

    params = {**json.loads(args.params), "steps": args.steps}
    for name, steps in (("generative-llm", args.steps), ("generative-llm untuned", 0)):
        started = time.process_time()
        model = GenerativeLLM(**{**params, "steps": steps}).fit(parts.train)
        fit_cpu = time.process_time() - started
        same_codes = bool(np.array_equal(model.codes_, transformer.codes_))
        scores[name] = beam_metrics(model, histories, held_out)
        losses = [h["loss"] for h in model.history_]
        report["models"][name] = {
            **summary(scores[name]),
            "fit_cpu_s": fit_cpu,
            "steps": steps,
            "config": model.config.model_dump(),
            "same_index_as_generative": same_codes,
            "loss_first_10_steps": float(np.mean(losses[:10])) if losses else None,
            "loss_last_10_steps": float(np.mean(losses[-10:])) if losses else None,
        }
        print(name, report["models"][name], flush=True)
    report["paired_ndcg@10"] = {
        "generative-llm − generative": paired(
            scores["generative-llm"]["ndcg@10"], scores["generative"]["ndcg@10"]
        ),
        "generative-llm − untuned": paired(
            scores["generative-llm"]["ndcg@10"], scores["generative-llm untuned"]["ndcg@10"]
        ),
    }
    print(json.dumps(report["paired_ndcg@10"], indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
