"""Peers, side by side (issue 3): whyrec's models against Cornac's and LensKit's.

One split at a time (ml-latest-small, `user-temporal` or `loo`, seed 0, test fraction 0.2)
built by whyrec's own `whyrec.data.splits.split`. Every library gets exactly the same
training interactions as binary implicit feedback (one row per distinct user-item pair, no
ratings). Every test user is scored against the whole catalog, their training items are
excluded, ties are broken by lower catalog position, and nDCG@10 / Recall@20 come from
whyrec's own metric code (`whyrec.ranking.top_k_rows` and `per_user_metrics`), so all
numbers are comparable. Items a peer never saw in training (none, after the split drops
cold items) would get -inf.

Each fit runs in its own child process (one run each; timings on a busy machine vary by
some 10-20%). Fit time is wall-clock seconds of the fit call alone. Memory: "peak MiB" is
the child's peak RSS (`getrusage` ru_maxrss) right after the fit, which includes the
interpreter, the data and the library's imports; "fit MiB" is the fit's own share: the
kernel's peak-RSS mark (VmHWM) is reset through /proc/self/clear_refs just before the fit,
and the fit's MiB are VmHWM after the fit minus VmRSS before it (Linux only; elsewhere
the column is the growth of ru_maxrss, 0 when the fit stays under an earlier peak).

    pip install -r benchmarks/requirements-peers.txt   # peers only, not in pyproject
    python benchmarks/bench_peers.py [--models ease,itemknn,ials,bpr,popularity]
                                     [--peers cornac,lenskit] [--data ml-latest-small]
                                     [--splits user-temporal,loo] [--pair sansa,ease]

SANSA (issue 20) against EASE, whose sparse approximation it is: `--models ease,sansa
--peers "" --splits user-temporal,loo` prints, per split, SANSA's nDCG@10 and Recall@20 as a
ratio of EASE's with a 95% paired bootstrap interval (the same test users resampled for
both) and the paired t-interval of the per-user difference.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = ("ease", "sansa", "itemknn", "ials", "bpr", "popularity")
PEERS = ("cornac", "lenskit")
SEED = 0
KS = (10, 20)
BATCH = 256

# Hyper-parameters, matched where the concepts match (printed with the results).
OURS = {
    "ease": {"reg": 250.0},
    "sansa": {},  # its defaults, chosen by `whyrec tune` on validation splits (docs/sansa.md)
    "itemknn": {"neighbors": 100},  # cosine; our default shrink (10) is kept
    "ials": {"factors": 64, "reg": 10.0, "alpha": 10.0, "iterations": 15, "seed": SEED},
    "bpr": {"factors": 64, "learning_rate": 0.05, "reg": 0.01, "iterations": 100, "seed": SEED},
    "popularity": {},
}
CORNAC = {
    "ease": ("EASE", {"lamb": 250.0, "posB": False, "seed": SEED}),
    "sansa": None,
    "itemknn": ("ItemKNN", {"k": 100, "similarity": "cosine", "seed": SEED}),
    # cornac.models.WMF (its implicit MF) needs TensorFlow, which this benchmark does not
    # install; cornac has no other ALS-style implicit MF.
    "ials": None,
    "bpr": (
        "BPR",
        {"k": 64, "max_iter": 100, "learning_rate": 0.05, "lambda_reg": 0.01, "seed": SEED},
    ),
    "popularity": ("MostPop", {}),
}
LENSKIT = {
    "ease": ("lenskit.knn.ease", "EASEScorer", {"regularization": 250.0}),
    "sansa": None,
    "itemknn": ("lenskit.knn", "ItemKNNScorer", {"max_nbrs": 100, "feedback": "implicit"}),
    "ials": (
        "lenskit.als",
        "ImplicitMFScorer",
        {"embedding_size": 64, "regularization": 10.0, "weight": 10.0, "epochs": 15},
    ),
    # FlexMF with the "bpr" preset: pairwise (BPR) loss, trained with Adam in PyTorch.
    "bpr": (
        "lenskit.flexmf",
        "FlexMFImplicitScorer",
        {"preset": "bpr", "embedding_size": 64, "epochs": 100},
    ),
    "popularity": ("lenskit.basic", "PopScorer", {"score": "count"}),
}
LABELS = {"ease": "EASE", "sansa": "SANSA", "itemknn": "ItemKNN", "ials": "iALS/WMF"}
LABELS["bpr"] = "BPR"
LABELS["popularity"] = "MostPop"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class FitMemory:
    """Peak RSS of the whole child after the fit, and the fit's own peak above its start."""

    def __enter__(self) -> FitMemory:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # resets VmHWM (the peak RSS mark) to the current RSS
            self.start = _status_mib("VmRSS")
        except OSError:
            self.start = None
        self.peak_before = _peak_rss_mib()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = _peak_rss_mib()
        high = _status_mib("VmHWM") if self.start is not None else None
        if high is not None and self.start is not None:
            self.own = high - self.start
        else:
            self.own = self.peak - self.peak_before


def peer_spec(library: str, model: str):
    return {"cornac": CORNAC, "lenskit": LENSKIT}[library][model]


def params_of(library: str, model: str) -> dict | None:
    if library == "whyrec":
        return OURS[model]
    spec = peer_spec(library, model)
    return None if spec is None else spec[-1]


# ----- the shared split and evaluation ----------------------------------------------------
def load_split(data: str, method: str = "user-temporal"):
    from whyrec.data.loaders import load_dataset
    from whyrec.data.splits import split
    from whyrec.evaluation.protocol import EvaluationTarget

    the_split = split(load_dataset(data), method, seed=SEED)
    return the_split, EvaluationTarget.from_split(the_split)


def train_pairs(the_split) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user id, item id) training pairs: the binary implicit training data."""
    frame = the_split.train.interactions[["user_id", "item_id"]].drop_duplicates()
    return frame["user_id"].to_numpy(str), frame["item_id"].to_numpy(str)


def evaluate(score_rows, target) -> dict:
    """Top-20 lists from `score_rows(start, stop)`, training items excluded, our metrics."""
    from whyrec.evaluation.protocol import per_user_metrics
    from whyrec.ranking import top_k_rows

    lists = np.empty((len(target.users), max(KS)), dtype=np.int64)
    for start in range(0, len(target.users), BATCH):
        stop = min(start + BATCH, len(target.users))
        scores = np.asarray(score_rows(start, stop), dtype=np.float32)
        seen = target.train_rows[start:stop]
        rows = np.repeat(np.arange(stop - start), np.diff(seen.indptr))
        scores[rows, seen.indices] = -np.inf
        lists[start:stop] = top_k_rows(scores, max(KS))
    values = per_user_metrics(lists, target, KS)
    return {
        "ndcg@10": float(values["ndcg@10"].mean()),
        "recall@20": float(values["recall@20"].mean()),
        "users": len(target.users),
        # per test user, in the split's user order: for paired intervals between models
        "per_user": {key: values[key].tolist() for key in ("ndcg@10", "recall@20")},
    }


# ----- one fit per library ----------------------------------------------------------------
def fit_whyrec(model: str, the_split, target):
    from whyrec.models import model_class

    cls = model_class(model)
    with FitMemory() as memory:
        started = time.perf_counter()
        fitted = cls(**OURS[model]).fit(the_split.train)
        seconds = time.perf_counter() - started

    def score_rows(start: int, stop: int) -> np.ndarray:
        return fitted.score(target.histories[start:stop])

    return seconds, memory, score_rows


def fit_cornac(model: str, the_split, target):
    import cornac
    import cornac.models

    name, params = peer_spec("cornac", model)
    users, items = train_pairs(the_split)
    triples = list(zip(users.tolist(), items.tolist(), [1.0] * len(users), strict=True))
    train_set = cornac.data.Dataset.from_uir(triples, seed=SEED)
    model_cls = getattr(cornac.models, name)
    quiet = {"verbose": False} if "verbose" in inspect.signature(model_cls).parameters else {}
    recommender = model_cls(**quiet, **params)
    with FitMemory() as memory:
        started = time.perf_counter()
        recommender.fit(train_set)
        seconds = time.perf_counter() - started

    catalog = the_split.train.catalog
    n_items = the_split.train.n_items
    known = sorted(train_set.iid_map.items(), key=lambda pair: pair[1])
    peer_to_ours = catalog.positions([raw for raw, _ in known])
    test_user_ids = the_split.train.user_ids[target.users]

    def score_rows(start: int, stop: int) -> np.ndarray:
        out = np.full((stop - start, n_items), -np.inf, dtype=np.float32)
        for row, user_id in enumerate(test_user_ids[start:stop]):
            user_idx = train_set.uid_map[str(user_id)]
            out[row, peer_to_ours] = recommender.score(user_idx)
        return out

    return seconds, memory, score_rows


def fit_lenskit(model: str, the_split, target):
    import importlib

    import pandas as pd
    from lenskit.data import ItemList, RecQuery, from_interactions_df
    from lenskit.random import init_global_rng
    from lenskit.training import TrainingOptions

    module, name, params = peer_spec("lenskit", model)
    scorer_class = getattr(importlib.import_module(module), name)
    users, items = train_pairs(the_split)
    data = from_interactions_df(pd.DataFrame({"user_id": users, "item_id": items}))
    init_global_rng(SEED)
    scorer = scorer_class(**params)
    with FitMemory() as memory:
        started = time.perf_counter()
        scorer.train(data, TrainingOptions(rng=SEED))
        seconds = time.perf_counter() - started

    catalog = the_split.train.catalog
    n_items = the_split.train.n_items
    candidate_ids = np.asarray(catalog.item_ids, dtype=object)
    candidates = ItemList(item_ids=candidate_ids)
    test_user_ids = the_split.train.user_ids[target.users]

    def score_rows(start: int, stop: int) -> np.ndarray:
        out = np.full((stop - start, n_items), -np.inf, dtype=np.float32)
        for row, position in enumerate(range(start, stop)):
            history = ItemList(item_ids=candidate_ids[target.histories[position]])
            query = RecQuery(user_id=str(test_user_ids[position]), history_items=history)
            if model == "popularity":
                scored = scorer(items=candidates)
            else:
                scored = scorer(query=query, items=candidates)
            scores = scored.scores("numpy")
            if scores is None:
                continue
            positions = catalog.positions(pd.Index(scored.ids()).astype(str))
            finite = np.isfinite(scores) & (positions >= 0)
            out[row, positions[finite]] = scores[finite]
        return out

    return seconds, memory, score_rows


FITTERS = {"whyrec": fit_whyrec, "cornac": fit_cornac, "lenskit": fit_lenskit}


def child(library: str, model: str, data: str, method: str) -> dict:
    if library == "lenskit":  # imported before the "before" mark, like every library
        import lenskit  # noqa: F401
    elif library == "cornac":
        import cornac  # noqa: F401
    the_split, target = load_split(data, method)
    seconds, memory, score_rows = FITTERS[library](model, the_split, target)
    started = time.perf_counter()
    result = evaluate(score_rows, target)
    result.update(
        fit_s=seconds,
        peak_mib=memory.peak,
        fit_mib=memory.own,
        score_s=time.perf_counter() - started,
    )
    return result


def run_child(library: str, model: str, data: str, method: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            f"{library}:{model}",
            "--data",
            data,
            "--splits",
            method,
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----- the parent -------------------------------------------------------------------------
def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def _mib_ratio(ours: float, theirs: float) -> str:
    """Ratio of the fits' own MiB; under 5 MiB on either side it is noise, so say so."""
    if ours < 5 or theirs < 5:
        return "both<5" if ours < 5 and theirs < 5 else ("ours<5" if ours < 5 else "peer<5")
    return _ratio(ours, theirs)


NOTES = (
    "EASE: all three solve the same closed form; nDCG must match (a check of the harness).",
    "ItemKNN: cornac's ItemKNN is a rating predictor (a similarity-weighted *average* of "
    "the user's ratings over the top-k neighbours); on binary data nearly every candidate "
    "averages to 1, so its top-N is close to arbitrary. LensKit's max_nbrs caps the "
    "neighbours used per scored item among the user's history; ours keeps each item's "
    "100 most similar items and adds shrink 10 to the cosine denominator. LensKit keeps "
    "every similarity at fit time (save_nbrs unset) and picks neighbours per query, so its "
    "fit does less and its scoring more: compare fit+score as well as fit.",
    "iALS: cornac has no native implicit ALS; its WMF needs TensorFlow (not installed).",
    "BPR: cornac's is Cython Hogwild SGD on all cores (num_threads=0), ours implicit's SGD "
    "on 1 thread (reproducible); LensKit's is FlexMF (PyTorch, Adam, minibatches of "
    "8192, its own default learning rate 0.01), so its epochs are not comparable steps.",
    "MostPop: all three rank by training-user counts; ties broken by catalog position.",
)


def report(results: dict, models: list[str], peers: list[str]) -> None:
    print("\nAbsolute numbers (one child process per fit)")
    header = (
        f"{'model':<9} {'library':<8} {'nDCG@10':>8} {'Recall@20':>9} {'fit s':>8} "
        f"{'score s':>8} {'peak MiB':>9} {'fit MiB':>8}  params"
    )
    print(header)
    print("-" * len(header))
    for model in models:
        for library in ["whyrec", *peers]:
            r = results.get((library, model))
            params = params_of(library, model)
            if r is None:
                continue
            if "error" in r or "missing" in r:
                why = r.get("missing") or r["error"]
                print(
                    f"{LABELS[model]:<9} {library:<8} {'—':>8} {'—':>9} {'—':>8} {'—':>8} "
                    f"{'—':>9} {'—':>8}  {why}"
                )
                continue
            print(
                f"{LABELS[model]:<9} {library:<8} {r['ndcg@10']:>8.4f} {r['recall@20']:>9.4f} "
                f"{r['fit_s']:>8.2f} {r['score_s']:>8.2f} {r['peak_mib']:>9.0f} "
                f"{r['fit_mib']:>8.0f}  "
                f"{json.dumps(params)}"
            )
    print("\nNotes")
    for note in NOTES:
        print(f"- {note}")
    print(
        "\nRatios ours / peer (nDCG@10 above 1 = we rank better; time, memory below 1 = we "
        "use less)"
    )
    header = (
        f"{'model':<9} {'peer':<8} {'nDCG@10':>8} {'fit time':>9} {'fit+score':>9} "
        f"{'peak RSS':>9} {'fit MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for model in models:
        ours = results.get(("whyrec", model), {})
        for peer in peers:
            theirs = results.get((peer, model), {})
            if "ndcg@10" not in ours or "ndcg@10" not in theirs:
                why = theirs.get("missing") or theirs.get("error") or ours.get("error", "")
                print(f"{LABELS[model]:<9} {peer:<8} not compared: {why}")
                continue
            total = _ratio(ours["fit_s"] + ours["score_s"], theirs["fit_s"] + theirs["score_s"])
            print(
                f"{LABELS[model]:<9} {peer:<8} {_ratio(ours['ndcg@10'], theirs['ndcg@10']):>8} "
                f"{_ratio(ours['fit_s'], theirs['fit_s']):>9} {total:>9} "
                f"{_ratio(ours['peak_mib'], theirs['peak_mib']):>9} "
                f"{_mib_ratio(ours['fit_mib'], theirs['fit_mib']):>8}"
            )


def paired_ratio(ours: np.ndarray, base: np.ndarray, rounds: int = 2000) -> dict:
    """mean(ours) / mean(base) with a 95% paired bootstrap interval over test users, and
    the paired t-interval of the mean per-user difference."""
    from whyrec.evaluation.protocol import t_interval

    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, len(ours), size=(rounds, len(ours)))
    ratios = ours[picks].mean(axis=1) / np.maximum(base[picks].mean(axis=1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    diff_low, diff_high = t_interval(ours - base)
    return {
        "ratio": float(ours.mean() / base.mean()),
        "ratio_interval": (float(low), float(high)),
        "difference": float((ours - base).mean()),
        "difference_interval": (diff_low, diff_high),
    }


def report_pair(results: dict, pair: tuple[str, str], method: str) -> None:
    ours, base = (results.get(("whyrec", name), {}) for name in pair)
    if "per_user" not in ours or "per_user" not in base:
        return
    print(f"\nPaired, {method}: {LABELS[pair[0]]} / {LABELS[pair[1]]} over {ours['users']} users")
    for key in ("ndcg@10", "recall@20"):
        row = paired_ratio(np.asarray(ours["per_user"][key]), np.asarray(base["per_user"][key]))
        low, high = row["ratio_interval"]
        d_low, d_high = row["difference_interval"]
        print(
            f"  {key:<9} {ours[key]:.4f} vs {base[key]:.4f}: ratio {row['ratio']:.3f} "
            f"[{low:.3f}, {high:.3f}], difference {row['difference']:+.4f} "
            f"[{d_low:+.4f}, {d_high:+.4f}]"
        )
    print(
        f"  fit {ours['fit_s']:.2f}s vs {base['fit_s']:.2f}s, fit MiB {ours['fit_mib']:.0f} vs "
        f"{base['fit_mib']:.0f}, peak MiB {ours['peak_mib']:.0f} vs {base['peak_mib']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--data", default="ml-latest-small")
    parser.add_argument("--splits", default="user-temporal", help="e.g. user-temporal,loo")
    parser.add_argument("--pair", default="sansa,ease", help="OURS,BASE for paired ratios")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        library, model = args.child.split(":")
        print(json.dumps(child(library, model, args.data, args.splits)))
        return
    pair = tuple(name.strip().lower() for name in args.pair.split(","))
    if len(pair) != 2 or not set(pair) <= set(MODELS):
        parser.error(f"--pair expects two of {MODELS}, e.g. sansa,ease")
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    peers = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown model or peer {unknown}; models: {MODELS}, peers: {PEERS}")
    installed = []
    for peer in peers:
        if importlib.util.find_spec(peer) is None:
            print(
                f"peer library {peer!r} is not installed; skipping it "
                f"(pip install -r benchmarks/requirements-peers.txt)",
                file=sys.stderr,
            )
        else:
            installed.append(peer)
    started = time.perf_counter()
    for method in [m.strip() for m in args.splits.split(",") if m.strip()]:
        compare(args.data, method, models, installed, pair)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f}s")


def compare(data: str, method: str, models: list[str], installed: list[str], pair) -> None:
    """Every model of every library on one split, then the tables and the paired ratios."""
    print(
        f"\ndata {data}, split {method}(seed={SEED}, test_fraction=0.2), binary "
        f"implicit training pairs, full ranking without training items, whyrec's metrics"
    )
    results: dict = {}
    for model in models:
        for library in ["whyrec", *installed]:
            if library != "whyrec" and peer_spec(library, model) is None:
                results[(library, model)] = {"missing": "no such model in this library"}
                print(f"{library}:{model} — missing", flush=True)
                continue
            result = run_child(library, model, data, method)
            results[(library, model)] = result
            brief = result.get("error") or (
                f"nDCG@10 {result['ndcg@10']:.4f}, fit {result['fit_s']:.2f}s, "
                f"peak {result['peak_mib']:.0f} MiB"
            )
            print(f"{library}:{model} — {brief}", flush=True)
    report(results, models, installed)
    report_pair(results, pair, method)


if __name__ == "__main__":
    main()
