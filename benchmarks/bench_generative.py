"""Generative recommendation (semantic indices + constrained beam search) on ml-latest-small.

The loo protocol of the other sequential models (bench_neural.py: the latest item of each
user held out, seed 42, full ranking over unseen items), the same test users for every
model, scored by whyrec's evaluation protocol:

- HR@10 / nDCG@10 of generative vs SASRec, the text model and popularity, with the paired
  95% interval of the per-user difference;
- the rare-item slice (held-out items with < 5 training interactions): HR@50;
- the index: collision rate before and after the collision token, codebook use per level;
- generation: valid-output rate and per-user latency of beam search (beam 20, top-10, one
  torch thread; wall clock and the thread's CPU time, which a busy machine distorts
  less), and how often the beam's top-10 equals the exhaustive top-10;
- explanations: PN@10 of the generation-path evidence against random history items of
  the same size (whyrec.explain.fidelity);
- generative-KIND in --models: the other indexing choices (sequential, semantic,
  collaborative), for the comparison of "How to Index Item IDs"; the combined report's
  `indexing` table puts every indexing choice in the folder side by side (accuracy,
  rare-item HR@50, collisions, codebook use per level), and `paired` has each one's
  interval against the default (hybrid) `generative`.

Each model's per-user values are saved under --parts, so models can be fitted by
separate processes (in parallel) and combined with --combine-only:

    WHYREC_DATA_DIR=/work/shared/data/movielens nice -n 10 .venv/bin/python \\
        benchmarks/bench_generative.py --json benchmarks/results/generative.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from whyrec.bundle import Bundle
from whyrec.data.loaders import load_directory
from whyrec.data.splits import split
from whyrec.evaluation.protocol import (
    RARE_BELOW,
    EvaluationTarget,
    evaluate_model,
    slice_summary,
)
from whyrec.evaluation.statistics import t_interval
from whyrec.explain.fidelity import explanation_fidelity
from whyrec.models import model_class
from whyrec.models.generative import Generative
from whyrec.models.generative.indexing import IndexKind
from whyrec.ranking import exclude_seen, ranks_in_rows, top_k_rows

KS = [10, 50]
KS_KEYS = ("hr@10", "ndcg@10", "hr@50")


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of the per-user difference a − b and its Student-t 95% interval."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = t_interval(diff)
    return float(diff.mean()), low, high


def generation_checks(model: Generative, target: EvaluationTarget, users: int, beam: int) -> dict:
    """Beam search on `users` test histories: validity, latency, agreement with exhaustive."""
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(target.users), min(users, len(target.users)), replace=False))
    latencies, cpu_times, valid, produced, same_top = [], [], 0, 0, []
    for row in rows.tolist()[:5]:  # warm-up (first calls allocate)
        model.generate(target.histories[row], k=10, beam=beam)
    for row in rows.tolist():
        history = target.histories[row]
        started, cpu = time.perf_counter(), time.thread_time()
        generated = model.generate(history, k=10, beam=beam)
        latencies.append(time.perf_counter() - started)
        cpu_times.append(time.thread_time() - cpu)
        positions = generated.positions
        produced += 10
        known = (positions >= 0) & (positions < model.n_items_)
        unseen = ~np.isin(positions, history)
        # a real item: its index is in the catalog's index table and maps back to it
        codes_match = (np.asarray(model.codes_)[positions] == generated.codes).all(axis=1)
        valid += int((known & unseen & codes_match).sum())
        exhaustive = top_k_rows(exclude_seen(model.score([history]), [history]), 10)[0]
        same_top.append(len(set(exhaustive.tolist()) & set(positions.tolist())) / 10)
    ms, cpu_ms = np.array(latencies) * 1000, np.array(cpu_times) * 1000
    return {
        "users": len(rows),
        "beam": beam,
        "valid_output_rate": valid / produced,
        "outputs": produced,
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        # CPU time of the calling thread: comparable when the shared machine is busy
        "latency_cpu_ms_median": float(np.median(cpu_ms)),
        "latency_cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
        "beam_top10_overlap_with_exhaustive": float(np.mean(same_top)),
    }


def index_facts(model: Generative) -> dict:
    codes = np.asarray(model.codes_)
    full_duplicates = len(codes) - len(np.unique(codes, axis=0))
    semantic_levels = model.config.levels if model.config.index != "sequential" else codes.shape[1]
    return {
        "index": model.config.index,
        "codebook_sizes": [int(s) for s in model.sizes_],
        "collision_token": bool(codes.shape[1] > model.config.levels),
        "items_sharing_semantic_levels": int(model.shared_before_collision_),
        "collision_rate_semantic_levels": model.shared_before_collision_ / len(codes),
        "collision_rate_full_index": full_duplicates / len(codes),
        "utilisation_per_level": [
            len(np.unique(codes[:, level])) / int(size) for level, size in enumerate(model.sizes_)
        ],
        "semantic_levels": semantic_levels,
        "item_backoff": model.item_backoff_,
    }


def run_model(name: str, params: dict, args, parts, target, rare) -> dict:
    """Fit one model, evaluate it, and (for generative models) check the index, the
    generation and the explanations. Per-user values go to `args.parts`/NAME.npz."""
    base, _, kind = name.partition("-") if name.startswith("generative") else (name, "", "")
    config = dict(params.get(name, params.get(base, {})))
    if kind:
        config["index"] = kind
    model = model_class(base)(**config)
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(parts.train)
    fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    result = evaluate_model(name, model, parts, KS, target=target, fitted=True)
    rare_summary = slice_summary(result, target, rare, KS) if rare is not None else {}
    row = {
        "params": config,
        "fit_seconds": fit_s,
        "fit_cpu_seconds": cpu_s,
        "score_seconds": result.score_seconds,
        **{key: result.summary[key].to_dict() for key in ("hr@10", "ndcg@10", "hr@50")},
        "rare_hr@50": rare_summary["hr@50"].to_dict() if rare_summary else None,
        "rare_users": len(rare.users) if rare is not None else 0,
    }
    print(
        f"{name:<24} fit {fit_s:7.1f}s  HR@10 {row['hr@10']['mean']:.4f}  "
        f"nDCG@10 {row['ndcg@10']['mean']:.4f}  rare HR@50 "
        f"{row['rare_hr@50']['mean'] if row['rare_hr@50'] else float('nan'):.4f}",
        flush=True,
    )
    if isinstance(model, Generative):
        row["index"] = index_facts(model) | {"best_epoch": model.best_epoch_}
        row["training"] = model.history_  # loss and validation nDCG@10 per epoch
        if kind in ("", "hybrid") or args.all_checks:
            row["generation"] = generation_checks(model, target, args.generation_users, beam=20)
            fidelity = explanation_fidelity(
                model,
                parts,
                k=10,
                n_users=args.fidelity_users,
                seed=0,
                evidence_size=3,
                max_removed=3,
            )
            row["explanations"] = {
                key: fidelity[key]
                for key in ("pn@10", "pn@10_random", "ps@10", "ps@10_random", "settings")
            }
        print(
            json.dumps(
                {k: row[k] for k in row if k in ("index", "generation", "explanations")},
                indent=1,
                default=float,
            ),
            flush=True,
        )
    args.parts.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Generative):  # kept for --latency-only at a quieter moment
        Bundle(model, parts.train, {}).save(args.parts / f"{name}-bundle")
    np.savez(args.parts / f"{name}.npz", **{k: v for k, v in result.per_user.items()})
    (args.parts / f"{name}.json").write_text(json.dumps(row, indent=2, default=float))
    return row


def latency_only(args, target) -> dict:
    """Generation checks again on a saved generative bundle (no training), for timing when
    the machine is quiet: --bundle, or the one the benchmark saved under --parts (whose
    row is then updated)."""
    path = args.bundle or args.parts / "generative-bundle"
    model = Bundle.load(path).model
    generation = generation_checks(model, target, args.generation_users, beam=20)
    print(json.dumps(generation, indent=1), flush=True)
    row_path = args.parts / "generative.json"
    if args.bundle is None and row_path.exists():
        row = json.loads(row_path.read_text())
        row["generation"] = generation
        row_path.write_text(json.dumps(row, indent=2, default=float))
    return {"bundle": str(path), "config": model.config.model_dump(), "generation": generation}


def index_only(kinds: list[str], dataset) -> dict:
    """Index facts of each indexing choice, without training a sequence model."""
    from whyrec.models.generative.indexing import build_index, has_text
    from whyrec.text.encoder import encode_items

    text = encode_items(dataset.catalog) if has_text(dataset.catalog).any() else None
    facts = {}
    for kind in kinds:
        started = time.process_time()
        index = build_index(dataset, kind, 3, None, 64, 32, 300, 42, text)
        codes = index.codes
        facts[kind] = {
            "codebook_sizes": index.sizes,
            "items_sharing_semantic_levels": index.shared_before_collision,
            "collision_rate_full_index": (len(codes) - len(np.unique(codes, axis=0))) / len(codes),
            "utilisation_per_level": index.utilisation(),
            "cpu_seconds": time.process_time() - started,
        }
        print(kind, json.dumps(facts[kind], default=float), flush=True)
    return facts


def combine(args, target, rare) -> dict:
    """Every saved model's row plus paired intervals of generative against each other."""
    report: dict = {"protocol": "ml-latest-small, loo (seed 42), full ranking", "models": {}}
    per_user = {}
    for path in sorted(args.parts.glob("*.json")):
        report["models"][path.stem] = json.loads(path.read_text())
        per_user[path.stem] = dict(np.load(args.parts / f"{path.stem}.npz"))
    report["test_users"], report["rare_users"] = len(target.users), len(rare.users) if rare else 0
    paired = {}
    mine = per_user.get("generative")
    rows = target.rows_of(rare) if rare is not None else np.zeros(0, dtype=np.int64)
    for name, values in per_user.items():
        if mine is None or name == "generative":
            continue
        entry = {}
        for key in ("hr@10", "ndcg@10"):
            mean, low, high = paired_interval(mine[key], values[key])
            entry[key] = {"difference": mean, "ci95": [low, high]}
        mean, low, high = paired_interval(mine["hr@50"][rows], values["hr@50"][rows])
        entry["rare_hr@50"] = {"difference": mean, "ci95": [low, high]}
        paired[f"generative - {name}"] = entry
        print(
            f"generative − {name:<24} nDCG@10 {entry['ndcg@10']['difference']:+.4f} "
            f"[{entry['ndcg@10']['ci95'][0]:+.4f}, {entry['ndcg@10']['ci95'][1]:+.4f}]  "
            f"rare HR@50 {entry['rare_hr@50']['difference']:+.4f} "
            f"[{entry['rare_hr@50']['ci95'][0]:+.4f}, {entry['rare_hr@50']['ci95'][1]:+.4f}]"
        )
    report["paired"] = paired
    report["indexing"] = indexing_comparison(report["models"])
    return report


def indexing_comparison(models: dict) -> dict:
    """One row per generative indexing choice in the folder ("How to Index Item IDs"):
    accuracy, the rare-item slice and the index's collisions and codebook use."""
    table = {}
    for name, row in models.items():
        kind = name.partition("-")[2]
        if "index" not in row or kind not in ("", *get_args(IndexKind)):
            continue  # not a model, or an earlier generative run kept for comparison
        table[row["index"]["index"]] = {
            "part": name,
            "hr@10": row["hr@10"]["mean"],
            "ndcg@10": row["ndcg@10"]["mean"],
            "rare_hr@50": row["rare_hr@50"]["mean"] if row["rare_hr@50"] else None,
            "collision_rate_full_index": row["index"]["collision_rate_full_index"],
            "collision_rate_semantic_levels": row["index"]["collision_rate_semantic_levels"],
            "utilisation_per_level": row["index"]["utilisation_per_level"],
            "best_epoch": row["index"]["best_epoch"],
            "fit_cpu_seconds": row["fit_cpu_seconds"],
        }
    for kind, entry in table.items():
        print(
            f"index {kind:<14} HR@10 {entry['hr@10']:.4f}  nDCG@10 {entry['ndcg@10']:.4f}  "
            f"rare HR@50 {entry['rare_hr@50'] or 0:.4f}  collisions "
            f"{entry['collision_rate_full_index']:.4f}  use per level "
            + "/".join(f"{u:.2f}" for u in entry["utilisation_per_level"])
        )
    return table


def seed_means(directories: list[Path], rare_rows: np.ndarray) -> dict:
    """Runs with different seeds (one --parts folder each, same split and users): each
    model's per-user values averaged over the folders that hold it, and generative's paired
    interval against every other model on those averages (run-to-run variance is large):
    nDCG@10, HR@10, HR@50, and HR@50 on the rare-item slice (`rare_rows` of the users)."""
    names = sorted({path.stem for folder in directories for path in folder.glob("*.npz")})
    means, runs = {}, {}
    for name in names:
        folders = [folder for folder in directories if (folder / f"{name}.npz").exists()]
        loaded = [dict(np.load(folder / f"{name}.npz")) for folder in folders]
        means[name] = {key: np.mean([run[key] for run in loaded], axis=0) for key in KS_KEYS}
        runs[name] = {
            "folders": [str(folder) for folder in folders],
            **{
                key: [float(run[key].mean()) for run in loaded] + [float(means[name][key].mean())]
                for key in KS_KEYS
            },
            "rare_hr@50": [float(run["hr@50"][rare_rows].mean()) for run in loaded]
            + [float(means[name]["hr@50"][rare_rows].mean())],
        }
    paired = {}
    mine = means.get("generative")
    for name in names:
        if mine is None or name == "generative":
            continue
        entry = {}
        for key, rows in [(k, slice(None)) for k in KS_KEYS] + [("rare_hr@50", rare_rows)]:
            column = key.removeprefix("rare_")
            mean, low, high = paired_interval(mine[column][rows], means[name][column][rows])
            entry[key] = {"difference": mean, "ci95": [low, high]}
        paired[f"generative - {name}"] = entry
        print(
            f"seed mean: generative − {name}: "
            + "  ".join(
                f"{key} {e['difference']:+.4f} [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]"
                for key, e in entry.items()
            )
        )
    return {"per_run_then_mean": runs, "paired_on_seed_means": paired}


def validation_diagnosis(bundles: list[Path], train) -> dict:
    """Where the validation users' rare held-out items land, and why (validation only: each
    user's last training item, which the model never trained on; no test user is read).

    Rare means fewer than RARE_BELOW interactions in the data the model fitted (the
    benchmark's definition, moved to validation). Per bundle: the mean log-probability of
    the held-out item's token at each level (rare items against the others), and ranks
    with the bundle's fitted `item_backoff` and without it."""
    report = {}
    for path in bundles:
        model = Bundle.load(path).model
        sequences = [h + 1 for h in train.histories()]
        holdout = model.validation_sequences(sequences)
        fitted = np.zeros(train.n_items, dtype=np.int64)
        for sequence in sequences:
            fitted[np.unique(sequence[:-1] if len(sequence) >= 3 else sequence) - 1] += 1
        histories = [s[:-1] - 1 for s in holdout]
        targets = np.array([s[-1] - 1 for s in holdout])
        rare = fitted[targets] < RARE_BELOW
        token_log_probs, allowed = model.held_out_token_log_probs(holdout)
        entry = {
            "validation_users": len(holdout),
            "rare_users": int(rare.sum()),
            "item_backoff": model.item_backoff_,
            "refitted_item_backoff": model._fitted_item_backoff(holdout),
            "token_log_prob_per_level_rare": token_log_probs[rare].mean(0).tolist(),
            "token_log_prob_per_level_other": token_log_probs[~rare].mean(0).tolist(),
            "items_under_last_prefix_mean": float(allowed[:, -1].mean()),
        }
        share = model.item_backoff_
        for label, value in (("with_backoff", share), ("without_backoff", 0.0)):
            model.item_backoff_ = value
            scores = model.score(histories)
            log_likelihood = scores[np.arange(len(targets)), targets].astype(np.float64)
            exclude_seen(scores, histories)
            ranks = ranks_in_rows(scores, targets)
            top50 = top_k_rows(scores, 50)
            entry[label] = {
                "ndcg@10": float(np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0).mean()),
                "hr@50": float((ranks < 50).mean()),
                "rare_in_top50": int((ranks[rare] < 50).sum()),
                "median_rank_rare": float(np.median(ranks[rare])),
                "median_rank_all": float(np.median(ranks)),
                "mean_negative_log_likelihood": float(-log_likelihood.mean()),
                "share_of_top50_slots_rare": float((fitted[top50] < RARE_BELOW).mean()),
            }
        model.item_backoff_ = share
        report[str(path)] = entry
        print(path, json.dumps(entry, default=float), flush=True)
    return report


def write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=float))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models",
        default="generative,popularity,text,sasrec",
        help="models to fit here; generative-KIND is generative with index=KIND",
    )
    parser.add_argument("--params", default="{}", help='JSON, e.g. {"generative": {"epochs": 5}}')
    parser.add_argument("--generation-users", type=int, default=200)
    parser.add_argument("--fidelity-users", type=int, default=100)
    parser.add_argument("--parts", type=Path, default=Path("benchmarks/results/generative"))
    parser.add_argument(
        "--all-checks",
        action="store_true",
        help="generation and explanation checks for every index",
    )
    parser.add_argument(
        "--index-only", default="", help="only index facts of these kinds, e.g. hybrid,sequential"
    )
    parser.add_argument("--combine-only", action="store_true", help="only combine saved parts")
    parser.add_argument(
        "--seed-means",
        default="",
        help="comma-separated --parts folders of runs with other seeds: average and compare",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only re-run the generation checks on a saved generative bundle",
    )
    parser.add_argument("--bundle", type=Path, default=None, help="bundle for --latency-only")
    parser.add_argument(
        "--validation-diagnosis",
        default="",
        help="comma-separated generative bundles: rare items on their validation users only",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    data_dir = Path(os.environ.get("WHYREC_DATA_DIR", "../shared/data/movielens"))
    dataset = load_directory(data_dir / "ml-latest-small", name="ml-latest-small")
    parts = split(dataset, "loo", seed=42)
    target = EvaluationTarget.from_split(parts)
    rare = target.rare_items_slice(RARE_BELOW)
    print(f"ml-latest-small loo (seed 42): {len(target.users)} test users, full ranking")
    if args.index_only:
        facts = index_only(args.index_only.split(","), parts.train)
        write_json(args.json, facts)
        return
    if args.seed_means:
        rare_rows = target.rows_of(rare) if rare is not None else np.zeros(0, dtype=np.int64)
        folders = [Path(f) for f in args.seed_means.split(",")]
        write_json(args.json, seed_means(folders, rare_rows))
        return
    if args.validation_diagnosis:
        bundles = [Path(b) for b in args.validation_diagnosis.split(",")]
        write_json(args.json, validation_diagnosis(bundles, parts.train))
        return
    if args.latency_only:
        report = latency_only(args, target)
        write_json(args.json, report)
        return
    if not args.combine_only:
        for name in [m for m in args.models.split(",") if m]:
            run_model(name, params, args, parts, target, rare)
    write_json(args.json, combine(args, target, rare))


if __name__ == "__main__":
    main()
