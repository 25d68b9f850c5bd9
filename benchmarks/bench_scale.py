"""How whyrec's cost grows from 1e5 to 1e8 interactions, and where Spark takes over.

Usage (results merge into benchmarks/results/scale.json and scale.html):

    python benchmarks/bench_scale.py                  # 1e5, 1e6, 1e7 (text, spark ≤ 1e6): ≈ 20 min
    python benchmarks/bench_scale.py --sizes 1e7 --models text,spark --max-size text=1e7 \
        --max-size spark=1e7 --timeout 3600 --skip-ann
    python benchmarks/bench_scale.py --sizes 1e8 --memory-gb 100 --timeout 20000 \
        --max-size text=1e8 --max-size spark=1e8                 # on a bigger machine
    python benchmarks/bench_scale.py --sizes 1e5 --models ials,spark --skip-ann
    python benchmarks/bench_scale.py --sizes 1e6,1e7 --items 1e4,1e5,1e6 --models sansa,ease \
        --skip-ann --timeout 3600            # large catalogs (issue 20): SANSA, EASE's refusal
    python benchmarks/bench_scale.py ... --save-fits /tmp/fits   # keep each fitted model

For every size a synthetic dataset (`whyrec.data.synth`, users = K/50, items ≈ 3·√K) is
written once as Parquet. Every (model, size) then runs in its own child process, so
memory is honest: the parent samples the resident memory of the child's whole process
group (the JVM of Spark included) and kills it above --memory-gb, and a --timeout ends a
job that would not finish. Measured per job: load seconds (chunked Parquet reader), fit
seconds, peak memory (max of the sampled group RSS and the child's ru_maxrss) and
recommend latency (median of `Engine.recommend(k=10, explain=False)` over 200 users, one
BLAS thread).
The growth exponent is the least-squares slope of log(cost) against log(interactions).

Large catalogs (`--items`): the same jobs on catalogs of a given size instead of 3·√K
items, stored under "catalogs" as ITEMS:INTERACTIONS. A job whose model refuses to start
for lack of memory (EASE at 1e5 items) records its one-line refusal. For these runs the
recommend latency's p99 is reported too, and SANSA's fit time gets growth exponents in
items (at fixed interactions) and in interactions (at fixed items).

ANN: a 1M-item catalogue of 64-d factor-like vectors (genre-like clusters, varied norms)
with taste-mixture queries; recall@10 of the faiss index against exact search, and the
median single-query latency of both. A catalogue sweep (1e4 → 1e6 items) shows where
approximate retrieval starts to pay.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
MODELS = ("ease", "sansa", "itemknn", "ials", "text", "spark")
SETTINGS = {
    "ease": {"reg": 250.0},
    # bounded for million-item catalogs: 20 weights an item, each item's 50 strongest
    # co-occurrences in the Gram (docs/sansa.md measures what this costs in accuracy)
    "sansa": {"weights_per_item": 20, "gram_per_item": 50},
    "itemknn": {"neighbors": 100},
    "ials": {"factors": 64, "iterations": 15, "threads": 2},
    "text": {"mapping": "linear", "epochs": 1, "batch_size": 1024},
    "spark": {"factors": 64, "iterations": 15},
}
"""Model settings used at every size (text: one linear-map epoch keeps 1e7 feasible)."""
LATENCY_USERS = 200
DEFAULT_CAPS = {"text": 1e6, "spark": 1e6}
"""Largest default size per model, so the default run stays near 20 minutes here."""


# ----- child jobs -------------------------------------------------------------------------
def _limit_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def group_cpu_seconds() -> float:
    """User + system CPU seconds of this job's process group so far (its JVM included).

    The machine is shared: wall time stretches with other people's load, CPU time much
    less, so growth exponents and the Spark ratio are also reported on CPU time.
    """
    pgid, ticks = os.getpgid(0), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def dataset_folder(data_root: Path, size: int, items: int | None) -> Path:
    """synth-SIZE for the default 3·√K catalog, synth-SIZE-ITEMS for a chosen one."""
    return data_root / (f"synth-{size}" if items is None else f"synth-{size}-{items}")


def job_generate(size: int, data_root: Path, items: int | None = None) -> dict:
    from whyrec.data.synth import SynthConfig, default_shape, write_synthetic

    users, default_items = default_shape(size)
    config = SynthConfig(users=users, items=items or default_items, interactions=size, seed=0)
    started = time.perf_counter()
    write_synthetic(config, dataset_folder(data_root, size, items), "parquet")
    return {"seconds": time.perf_counter() - started, "users": users, "items": config.items}


def job_model(
    model: str, size: int, data_root: Path, items: int | None = None,
    save_fits: Path | None = None,
) -> dict:  # fmt: skip
    import numpy as np

    from whyrec.bundle import Bundle
    from whyrec.data.loaders import load_dataset
    from whyrec.engine import Engine
    from whyrec.errors import ResourceError
    from whyrec.models import model_class

    baseline = rss_mb()
    started = time.perf_counter()
    dataset = load_dataset(dataset_folder(data_root, size, items))
    _ = dataset.matrix
    load_seconds = time.perf_counter() - started
    result: dict = {"load_seconds": load_seconds, "rss_after_load_mb": rss_mb()}
    started = time.perf_counter()
    if model == "spark":
        from whyrec.spark import fit_ials_on_spark, spark_session

        with spark_session("local[2]", driver_memory="6g") as session:
            result["spark_start_seconds"] = time.perf_counter() - started
            started, cpu = time.perf_counter(), group_cpu_seconds()
            settings = model_class("ials")(**SETTINGS[model])
            fitted = fit_ials_on_spark(settings, dataset, session=session)
            result["fit_cpu_seconds"] = group_cpu_seconds() - cpu  # before the JVM exits
    else:
        if model == "text":  # encoding grows with items, not interactions: timed apart
            from whyrec.text.encoder import encode_items

            encode_items(dataset.catalog)  # memoised: the fit below reuses these vectors
            result["encode_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
        cpu = group_cpu_seconds()
        try:
            fitted = model_class(model)(**SETTINGS[model]).fit(dataset)
        except ResourceError as exc:  # refused before it started: the line a user sees
            return {"error": f"refused: {exc}", "refused_after_seconds": time.perf_counter()
                    - started, "baseline_rss_mb": baseline}  # fmt: skip
        result["fit_cpu_seconds"] = group_cpu_seconds() - cpu
    result["fit_seconds"] = time.perf_counter() - started
    if save_fits is not None:  # kept for later measurements without refitting
        fitted.save(save_fits / f"{model}-{items or 'default'}-{size}")
    if model == "sansa":
        encoder, decoder = fitted.weights_
        result.update(weights=encoder.nnz + decoder.nnz, density=fitted.density,
                      active_items=len(fitted.active_))  # fmt: skip
    rng = np.random.default_rng(0)
    users = rng.choice(dataset.n_users, LATENCY_USERS, replace=False)
    matrix = dataset.matrix
    histories = [matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]] for u in users]
    bundle = Bundle(fitted, dataset)
    result["load_average_before_latency"] = os.getloadavg()[0]  # next to every wall time
    result |= recommend_latency(Engine(bundle), histories)
    if fitted.candidate_scores(histories[0]) is not None:  # the full-row path, same run
        dense = recommend_latency(Engine(bundle, candidates=False), histories)
        result |= {f"full_row_{key}": value for key, value in dense.items()}
        result["full_row_over_candidates_p99"] = (
            dense["recommend_p99_ms"] / result["recommend_p99_ms"]
        )
    result["load_average_after_latency"] = os.getloadavg()[0]
    result["baseline_rss_mb"] = baseline
    result["peak_rss_self_mb"] = rss_mb()
    return result


def recommend_latency(engine, histories: list) -> dict:
    """Median and p99 wall time of `recommend(k=10, explain=False)`, with the thread's
    CPU time next to them: on a shared machine wall time also counts waiting for a core.

    One request on one core, as a server worker runs it (a 2-thread BLAS on a tiny
    product costs more in thread wake-ups than in arithmetic on a shared machine).
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    wall, cpu = [], []
    with threadpool_limits(limits=1):
        engine.recommend(histories[0], k=10, explain=False)  # warm caches
        for history in histories:
            began, began_cpu = time.perf_counter(), time.thread_time()
            engine.recommend(history, k=10, explain=False)
            cpu.append(time.thread_time() - began_cpu)
            wall.append(time.perf_counter() - began)
    return {
        "recommend_ms": float(np.median(wall) * 1e3),
        "recommend_p99_ms": float(np.percentile(wall, 99) * 1e3),
        "recommend_cpu_ms": float(np.median(cpu) * 1e3),
        "recommend_cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3),
    }


def clustered_catalog(n_items: int, dim: int, seed: int):
    """Factor-like item vectors: genre-like clusters, noise, popularity-varied norms."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n_items // 500), dim)).astype(np.float32)
    vectors = 0.6 * centres[rng.integers(0, len(centres), n_items)]
    vectors += 0.5 * rng.standard_normal((n_items, dim)).astype(np.float32)
    vectors *= rng.lognormal(0.0, 0.3, n_items).astype(np.float32)[:, None]
    picks = centres[rng.integers(0, len(centres), (600, 3))]
    weights = rng.dirichlet(np.ones(3), 600).astype(np.float32)
    queries = np.einsum("qk,qkd->qd", weights, picks)
    queries += 0.3 * rng.standard_normal(queries.shape).astype(np.float32)
    return vectors, queries.astype(np.float32)


def job_ann(n_items: int, dim: int = 64) -> dict:
    import faiss
    import numpy as np

    from whyrec.retrieval import ANNIndex, EmbeddingSpace, exact_top_k, recall_at_k

    faiss.omp_set_num_threads(1)  # one request, one core: the latency a server sees
    vectors, queries = clustered_catalog(n_items, dim, seed=1)
    space = EmbeddingSpace(vectors, np.arange(n_items))
    started = time.perf_counter()
    index = ANNIndex.build(space, queries[:200], k=10, target_recall=0.97)
    build = time.perf_counter() - started
    held = queries[200:]
    exact = exact_top_k(vectors, held, 10)
    found = np.vstack([index.search(q[None], 10)[0] for q in held])
    ann_ms, exact_ms = [], []
    for query in held[:200]:
        began = time.perf_counter()
        index.search(query[None], 60)  # what the engine asks for (k + confidence window)
        ann_ms.append((time.perf_counter() - began) * 1e3)
    vectors @ held[0]  # warm once (page-in, BLAS start-up)
    for query in held[:60]:
        began = time.perf_counter()
        scores = vectors @ query
        top = np.argpartition(-scores, 59)[:60]
        top[np.argsort(-scores[top])]
        exact_ms.append((time.perf_counter() - began) * 1e3)
    return {
        "items": n_items,
        "dim": dim,
        "build_seconds": build,
        "nlist": index.meta["nlist"],
        "nprobe": index.meta["nprobe"],
        "recall_at_10": recall_at_k(found, exact),
        "ann_ms": float(np.median(ann_ms)),
        "exact_ms": float(np.median(exact_ms)),
        "peak_rss_self_mb": rss_mb(),
    }


def run_job(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--save-fits", type=Path, default=None)
    args = parser.parse_args(argv)
    # one request on one core, exact and approximate alike: the latency a server worker sees
    _limit_threads(1 if args.job == "ann" else args.threads)
    if args.job == "generate":
        result = job_generate(args.size, args.data_root, args.items)
    elif args.job == "ann":
        result = job_ann(args.size)
    else:
        result = job_model(args.job, args.size, args.data_root, args.items, args.save_fits)
    print("RESULT " + json.dumps(result), flush=True)


# ----- the parent: spawn, watch memory, collect -------------------------------------------
def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (the child and its JVM)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 (pgrp) counted after the comm field
                continue
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def spawn(args: list[str], timeout: float, memory_gb: float) -> dict:
    """Run one child job; returns its result or why it stopped, plus the sampled peak."""
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    env = {**os.environ, "WHYREC_CACHE_DIR": tempfile.mkdtemp(prefix="whyrec-bench-cache-")}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env=env,
    )  # fmt: skip
    peak, reason = 0.0, None
    while process.poll() is None:
        peak = max(peak, group_rss_mb(process.pid))
        elapsed = time.perf_counter() - started
        if peak > memory_gb * 1024:
            reason = f"stopped: memory above {memory_gb:g} GiB"
        elif elapsed > timeout:
            reason = f"stopped: time above {timeout:g} s"
        if reason:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["peak_rss_mb"] = max(peak, result.get("peak_rss_self_mb", 0.0))
            result["wall_seconds"] = wall
            return result
    tail = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"error": reason or f"failed: {tail}", "peak_rss_mb": peak, "wall_seconds": wall}


def predicted_gb(model: str, size: int, items: int | None = None) -> float | None:
    """Memory a model needs for sure, when it can be told in advance (EASE: items²)."""
    from whyrec.data.synth import default_shape

    items = items or default_shape(size)[1]
    if model == "ease":
        from whyrec.models.ease import peak_bytes

        return peak_bytes(items) / 2**30  # the float32 Gram, inverted in place
    return None


def machine_free_gb() -> float:
    from whyrec.models.memory import available_bytes

    free = available_bytes()
    return math.inf if free is None else free / 2**30


def growth_exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(cost) on log(size); None with fewer than two sizes."""
    import numpy as np

    points = [(s, c) for s, c in points if c is not None and c > 0]
    if len(points) < 2:
        return None
    sizes, costs = zip(*points, strict=True)
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])


def summarise(results: dict) -> dict:
    """Growth exponents per model and metric, and the Spark crossover estimate."""
    summary: dict = {"exponents": {}}
    for model in MODELS:
        rows = {int(s): r for s, r in results["models"].get(model, {}).items() if "error" not in r}
        if not rows:
            continue
        summary["exponents"][model] = {
            "fit_seconds": growth_exponent([(s, r["fit_seconds"]) for s, r in rows.items()]),
            "fit_cpu_seconds": growth_exponent(
                [(s, r.get("fit_cpu_seconds")) for s, r in rows.items()]
            ),
            "peak_rss_mb": growth_exponent(
                [(s, r["peak_rss_mb"] - r.get("baseline_rss_mb", 0)) for s, r in rows.items()]
            ),
            "recommend_ms": growth_exponent([(s, r["recommend_ms"]) for s, r in rows.items()]),
        }
    ials = {int(s): r for s, r in results["models"].get("ials", {}).items() if "error" not in r}
    spark = {int(s): r for s, r in results["models"].get("spark", {}).items() if "error" not in r}
    summary["spark_vs_ials_cpu"] = {
        str(s): spark[s]["fit_cpu_seconds"] / ials[s]["fit_cpu_seconds"]
        for s in sorted(ials.keys() & spark.keys())
        if spark[s].get("fit_cpu_seconds") and ials[s].get("fit_cpu_seconds")
    }
    summary["spark_vs_ials"] = {
        str(s): spark[s]["fit_seconds"] / ials[s]["fit_seconds"]
        for s in sorted(ials.keys() & spark.keys())
    }
    if ials:
        largest = max(ials)
        row = ials[largest]
        per_interaction = (row["peak_rss_mb"] - row.get("baseline_rss_mb", 0)) * 2**20 / largest
        summary["ials_bytes_per_interaction"] = per_interaction
        summary["ials_seconds_per_million"] = row["fit_seconds"] / largest * 1e6
        for ram_gb in (24, 256, 1024):
            usable = 0.6 * ram_gb * 2**30
            summary.setdefault("single_machine_limit", {})[f"{ram_gb} GiB"] = (
                usable / per_interaction
            )
    summary["spark_advice"] = spark_advice(summary)
    summary["catalog_exponents"] = catalog_exponents(results.get("catalogs", {}))
    return summary


def catalog_exponents(catalogs: dict) -> dict:
    """Per model: fit-time slopes in items (fixed interactions) and interactions (fixed items)."""
    exponents: dict = {}
    for model, rows in catalogs.items():
        done = {tuple(map(int, key.split(":"))): r for key, r in rows.items() if "error" not in r}
        by_size: dict = {}
        by_items: dict = {}
        for (items, size), row in done.items():
            by_size.setdefault(size, []).append((items, row))
            by_items.setdefault(items, []).append((size, row))
        for label, groups in (("items", by_size), ("interactions", by_items)):
            for fixed, points in groups.items():
                if len(points) < 2:
                    continue
                for metric in ("fit_seconds", "fit_cpu_seconds", "peak_rss_mb"):
                    slope = growth_exponent([(x, r.get(metric)) for x, r in points])
                    key = f"{metric} in {label} (other fixed at {fixed:.0e})"
                    exponents.setdefault(model, {})[key] = slope
    return exponents


def spark_advice(summary: dict) -> list[str]:
    """Where Spark becomes the right choice, in sentences derived from the measurements."""
    ratios = summary.get("spark_vs_ials", {})
    if not ratios or "ials_bytes_per_interaction" not in summary:
        return []
    largest = max(ratios, key=int)
    ratio = ratios[largest]
    per_million = summary["ials_seconds_per_million"]
    limit_24 = summary["single_machine_limit"]["24 GiB"]
    limit_1t = summary["single_machine_limit"]["1024 GiB"]
    return [
        f"On the same cores Spark MLlib ALS took {ratio:.0f}x implicit's time at "
        f"{int(largest):,} interactions: on one machine Spark never pays (JVM, shuffles and "
        "block joins per iteration).",
        f"To merely match one 2-core implicit run, Spark needs about {2 * ratio:.0f} cores "
        "(assuming linear speed-up across executors).",
        f"Single-machine iALS used {summary['ials_bytes_per_interaction']:.0f} bytes an "
        f"interaction: a 24 GiB machine holds ≈{limit_24:.1e} interactions, a 1 TiB one "
        f"≈{limit_1t:.1e}.",
        f"implicit fits ≈{per_million:.1f} s per million interactions on 2 cores "
        f"(15 sweeps, 64 factors): 1e9 interactions ≈ {per_million * 1000 / 3600:.1f} h.",
        "Spark becomes the right choice when the interactions no longer fit the largest "
        "machine available (beyond the limits above), or when the retrain window is shorter "
        "than the single-machine fit and a cluster of well over "
        f"{2 * ratio:.0f} cores is at hand; below that, train on one machine and keep Spark "
        "for the data preparation that already runs there.",
    ]


# ----- report -----------------------------------------------------------------------------
def growth_plot(results: dict) -> str:
    import matplotlib

    from whyrec.evaluation.report import figure_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("fit_seconds", "fit, wall (s)"), ("fit_cpu_seconds", "fit, CPU (s)"),
               ("peak_rss_mb", "peak memory (MiB)"),
               ("recommend_ms", "recommend latency (ms)"))  # fmt: skip
    figure, axes = plt.subplots(1, 4, figsize=(19, 4.4))
    sizes = sorted({int(s) for m in results["models"].values() for s in m})
    for axis, (key, label) in zip(axes, metrics, strict=True):
        for model in MODELS:
            rows = sorted(
                (int(s), r[key])
                for s, r in results["models"].get(model, {}).items()
                if "error" not in r and r.get(key)
            )
            if rows:
                axis.plot(*zip(*rows, strict=True), marker="o", label=model)
        if key.startswith("fit") and sizes:  # slope-1 guide: linear growth in interactions
            axis.plot(sizes, [s / sizes[0] for s in sizes], "k:", lw=1, label="linear")
        axis.set(xscale="log", yscale="log", xlabel="interactions")
        axis.set_title(label, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    return figure_png(figure)


def ann_plot(results: dict) -> str:
    import matplotlib

    from whyrec.evaluation.report import figure_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((int(n), r) for n, r in results.get("ann", {}).items() if "error" not in r)
    figure, axis = plt.subplots(figsize=(6, 4))
    if rows:
        items = [n for n, _ in rows]
        axis.plot(items, [r["exact_ms"] for _, r in rows], marker="o", label="exact")
        axis.plot(items, [r["ann_ms"] for _, r in rows], marker="o", label="faiss IVF")
        for n, r in rows:
            axis.annotate(f"recall {r['recall_at_10']:.3f}", (n, r["ann_ms"]), fontsize=7)
    axis.set(xscale="log", yscale="log", xlabel="catalogue items (64-d)",
             ylabel="single-query top-k latency (ms)")  # fmt: skip
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    return figure_png(figure)


def render_html(results: dict) -> str:
    import html

    summary = results.get("summary", {})
    header = (
        "<tr><th>model</th><th>interactions</th><th>fit s</th><th>load s</th>"
        "<th>peak MiB</th><th>recommend ms</th><th>note</th></tr>"
    )
    body = []
    for model in MODELS:
        for size, row in sorted(results["models"].get(model, {}).items(), key=lambda x: int(x[0])):
            if "error" in row:
                cells = ["", "", f"{row.get('peak_rss_mb', 0):.0f}", "", html.escape(row["error"])]
            else:
                note = (f"Spark start {row['spark_start_seconds']:.1f}s"
                        if "spark_start_seconds" in row else "")  # fmt: skip
                if "encode_seconds" in row:
                    note = f"text encoding {row['encode_seconds']:.1f}s (not in fit)"
                cells = [f"{row['fit_seconds']:.2f}", f"{row['load_seconds']:.2f}",
                         f"{row['peak_rss_mb']:.0f}", f"{row['recommend_ms']:.2f}",
                         note]  # fmt: skip
            body.append(f"<tr><td>{model}</td><td>{int(size):,}</td>"
                        + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    exponents = "".join(
        f"<tr><td>{m}</td>" + "".join(
            f"<td>{v:.2f}</td>" if v is not None else "<td>–</td>"
            for v in e.values()
        ) + "</tr>"
        for m, e in summary.get("exponents", {}).items()
    )  # fmt: skip
    ann_rows = "".join(
        f"<tr><td>{int(n):,}</td><td>{r['recall_at_10']:.3f}</td><td>{r['exact_ms']:.2f}</td>"
        f"<td>{r['ann_ms']:.3f}</td><td>{r['exact_ms'] / r['ann_ms']:.0f}x</td>"
        f"<td>{r['nprobe']}/{r['nlist']}</td><td>{r['build_seconds']:.1f}</td></tr>"
        for n, r in sorted(results.get("ann", {}).items(), key=lambda x: int(x[0]))
        if "error" not in r
    )
    cpu_ratios = summary.get("spark_vs_ials_cpu", {})
    spark_rows = "".join(
        f"<tr><td>{int(s):,}</td><td>{ratio:.1f}x</td><td>{cpu_ratios[s]:.1f}x</td></tr>"
        if s in cpu_ratios
        else f"<tr><td>{int(s):,}</td><td>{ratio:.1f}x</td><td>–</td></tr>"
        for s, ratio in summary.get("spark_vs_ials", {}).items()
    )
    limits = "".join(
        f"<li>{ram}: about {n:.2g} interactions</li>"
        for ram, n in summary.get("single_machine_limit", {}).items()
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in results.get("notes", []))
    advice = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("spark_advice", []))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}img{max-width:100%}")  # fmt: skip
    return f"""<!DOCTYPE html><html><head><meta charset='utf-8'><title>whyrec scale</title>
<style>{style}</style></head><body>
<h1>whyrec at scale: 1e5 → 1e8 interactions</h1>
<p>{html.escape(results.get("machine", ""))}. Synthetic data (whyrec data synth: users = K/50,
items ≈ 3·√K, Zipf popularity, Pareto activity, genre-clustered tastes). Each cell ran in its
own process; peak memory is the resident set of the whole process group (JVM included).</p>
<img alt='growth' src='data:image/png;base64,{growth_plot(results)}'>
<h2>Per model and size</h2><table>{header}{"".join(body)}</table>
<h2>Growth exponents (log-log slope against interactions)</h2>
<table><tr><th>model</th><th>fit wall time</th><th>fit CPU time</th>
<th>peak memory above start-up</th><th>recommend latency</th></tr>{exponents}</table>
<h2>Large catalogs (sparse SANSA; EASE's memory check)</h2>
<table><tr><th>model</th><th>items</th><th>interactions</th><th>fit s</th><th>fit CPU s</th>
<th>peak MiB</th><th>density</th><th>recommend ms (median / p99)</th><th>note</th></tr>
{catalog_rows(results)}</table>
<table><tr><th>model</th><th>growth exponent of</th><th>slope</th></tr>
{
        "".join(
            f"<tr><td>{m}</td><td>{html.escape(k)}</td><td>{v:.2f}</td></tr>"
            for m, e in summary.get("catalog_exponents", {}).items()
            for k, v in e.items()
            if v is not None
        )
    }</table>
<h2>Approximate retrieval (faiss IVF, MIPS → L2)</h2>
<img alt='ann' src='data:image/png;base64,{ann_plot(results)}'>
<table><tr><th>items</th><th>recall@10</th><th>exact ms</th><th>ANN ms</th><th>speed-up</th>
<th>nprobe/nlist</th><th>build s</th></tr>{ann_rows}</table>
<h2>Spark ALS vs single-machine iALS (fit time ratio, same settings)</h2>
<table><tr><th>interactions</th><th>Spark / implicit (wall)</th>
<th>Spark / implicit (CPU)</th></tr>{spark_rows}</table>
<p>Single-machine iALS memory per interaction at the largest size measured:
{summary.get("ials_bytes_per_interaction", float("nan")):.0f} bytes. With 60% of RAM usable,
one machine holds:</p><ul>{limits}</ul>
<h2>When Spark is the right choice</h2><ul>{advice}</ul>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>"""


def catalog_rows(results: dict) -> str:
    import html

    rows = []
    for model, entries in results.get("catalogs", {}).items():
        for key, row in sorted(entries.items(), key=lambda x: tuple(map(int, x[0].split(":")))):
            items, size = map(int, key.split(":"))
            if "error" in row:
                cells = ["", "", f"{row.get('peak_rss_mb', 0):.0f}", "", "",
                         html.escape(row["error"])]  # fmt: skip
            else:
                cells = [f"{row['fit_seconds']:.1f}", f"{row.get('fit_cpu_seconds', 0):.1f}",
                         f"{row['peak_rss_mb']:.0f}",
                         f"{row['density']:.2e}" if "density" in row else "",
                         f"{row['recommend_ms']:.2f} / {row.get('recommend_p99_ms', 0):.2f}",
                         latency_note(row)]  # fmt: skip
            rows.append(f"<tr><td>{model}</td><td>{items:,}</td><td>{size:,}</td>"
                        + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")  # fmt: skip
    return "".join(rows)


def latency_note(row: dict) -> str:
    """Thread CPU time of the requests, and the full-row path's latency measured alongside."""
    if "recommend_cpu_ms" not in row:
        return ""
    note = f"CPU {row['recommend_cpu_ms']:.2f} / {row['recommend_cpu_p99_ms']:.2f} ms"
    if "full_row_recommend_ms" in row:
        note += (
            f"; full row {row['full_row_recommend_ms']:.2f} / "
            f"{row['full_row_recommend_p99_ms']:.2f} ms (p99 × "
            f"{row['full_row_over_candidates_p99']:.1f})"
        )
    return note


def load_results() -> dict:
    path = RESULTS / "scale.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"models": {}, "ann": {}, "generate": {}, "notes": []}


def save_results(results: dict) -> None:
    results["summary"] = summarise(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "scale.html").write_text(render_html(results))


def run_catalogs(args, results: dict, models: list[str], common: list[str]) -> None:
    """Every (items, interactions) pair of --items × --sizes, for every model."""
    for size in parse_sizes(args.sizes):
        for items in parse_sizes(args.items):
            shape = ["--size", str(size), "--items", str(items), *common]
            folder = dataset_folder(args.data_root, size, items)
            if not (folder / "interactions.parquet").exists():
                print(f"generating {size:,} interactions over {items:,} items …", flush=True)
                generated = spawn(["--job", "generate", *shape], 3 * args.timeout,
                                  args.memory_gb)  # fmt: skip
                results.setdefault("generate", {})[f"{items}:{size}"] = generated
                if "error" in generated:
                    print(f"  {generated}", flush=True)
                    continue
            for model in models:
                need = predicted_gb(model, size, items)
                if need is not None and args.memory_gb < need <= machine_free_gb():
                    row = {"error": f"skipped: needs ≈{need:.0f} GiB > {args.memory_gb:g} GiB"}
                else:  # fits, or more than the machine has: the model itself must refuse
                    row = spawn(["--job", model, *shape], args.timeout, args.memory_gb)
                results.setdefault("catalogs", {}).setdefault(model, {})[f"{items}:{size}"] = row
                shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                print(f"{model:>8} {items:>9,} items {size:>12,}: {shown}", flush=True)
                save_results(results)


def parse_sizes(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="interactions, e.g. 1e5,1e6")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ann-items", default="1e4,1e5,1e6", help="catalogue sizes for ANN")
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--memory-gb", type=float, default=10.0, help="kill a job above this")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per job")
    parser.add_argument(
        "--data-root", type=Path, default=Path(tempfile.gettempdir()) / "whyrec-scale"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--items",
        default="",
        help="catalog sizes, e.g. 1e5,1e6: run these instead of the default 3·√K catalog",
    )
    parser.add_argument(
        "--max-size",
        action="append",
        default=[],
        metavar="MODEL=SIZE",
        help="largest size for a model (default text=1e6, spark=1e6: at 1e7 each alone takes "
        "15-40 min on 2 shared cores); repeatable, e.g. --max-size spark=1e7",
    )
    parser.add_argument(
        "--save-fits", type=Path, default=None,
        help="save each fitted model under this folder (MODEL-ITEMS-SIZE), to measure later",
    )  # fmt: skip
    args = parser.parse_args()

    caps = dict(DEFAULT_CAPS)
    for entry in args.max_size:
        name, _, value = entry.partition("=")
        if name not in MODELS or not value:
            parser.error(f"--max-size expects MODEL=SIZE with MODEL in {', '.join(MODELS)}")
        caps[name] = float(value)
    results = load_results()
    load_before = os.getloadavg()[0]
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    results["machine"] = (
        f"{os.cpu_count()} CPU cores, {memory:.0f} GiB RAM, {args.threads} threads per job"
    )
    common = ["--data-root", str(args.data_root), "--threads", str(args.threads)]
    if args.save_fits is not None:
        common += ["--save-fits", str(args.save_fits)]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.items:
        run_catalogs(args, results, models, common)
        save_results(results)
        print(json.dumps(results["summary"]["catalog_exponents"], indent=2))
        return
    for size in parse_sizes(args.sizes):
        folder = args.data_root / f"synth-{size}"
        if not (folder / "interactions.parquet").exists():
            print(f"generating {size:,} interactions …", flush=True)
            generated = spawn(
                ["--job", "generate", "--size", str(size), *common],
                3 * args.timeout,
                args.memory_gb,
            )
            results["generate"][str(size)] = generated
            print(f"  {generated}", flush=True)
            if "error" in generated:
                continue
        for model in models:
            need = predicted_gb(model, size)
            if size > caps.get(model, math.inf):
                continue  # not run: keeps the default run short; earlier results are kept
            if need is not None and need > args.memory_gb:
                limit = f"{args.memory_gb:g} GiB"
                row = {"error": f"skipped: needs ≈{need:.0f} GiB (items² floats) > {limit}"}
            else:
                row = spawn(
                    ["--job", model, "--size", str(size), *common], args.timeout, args.memory_gb
                )
            results["models"].setdefault(model, {})[str(size)] = row
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            print(f"{model:>8} {size:>12,}: {shown}", flush=True)
            save_results(results)
    if not args.skip_ann:
        for items in parse_sizes(args.ann_items):
            row = spawn(
                ["--job", "ann", "--size", str(items), *common], args.timeout, args.memory_gb
            )
            results["ann"][str(items)] = row
            print(f"     ann {items:>12,}: {row}", flush=True)
            save_results(results)
    results.setdefault("notes", []).append(
        f"Run of {time.strftime('%Y-%m-%d %H:%M')} (sizes {args.sizes}, models "
        f"{args.models}): 1-minute load average "
        f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on "
        f"{os.cpu_count()} cores; other work shared the machine, so wall times are inflated "
        "and CPU times (fit_cpu_seconds) are the steadier measure."
    )
    save_results(results)
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    if "--job" in sys.argv:
        run_job(sys.argv[1:])
    else:
        main()
