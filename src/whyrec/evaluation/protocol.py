"""Full-ranking offline evaluation of fitted models on a train/test split (docs/metrics.md).

Protocol, stated once here and repeated in every report:

- Every test user (a user with at least one held-out interaction) is scored against the
  whole catalog from their *training* history; the items they interacted with in
  training are excluded; the top max(k) of the rest are ranked. No sampled negatives.
- Every held-out interaction is relevant (binary relevance). Metric definitions are
  those of `whyrec.evaluation.metrics` (docs/metrics.md).
- Per-user metrics are averaged over test users, with a 95% Student-t interval on the
  mean (deterministic, no resampling needed). Aggregate metrics (coverage, Gini, PopRSP,
  PopREO) get a 95% percentile interval from a per-user bootstrap with a fixed seed,
  shifted by the bootstrap's bias estimate (resampling users shrinks set-level figures
  such as coverage, so an unshifted interval would not even contain the observed value).
- Model pairs are compared per user with a paired t-test and a Wilcoxon signed-rank
  test on every per-user metric.

Ties in scores are broken by lower catalog position, as in `engine.top_k`, so a run is
deterministic for a seed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from whyrec.data.splits import Split
from whyrec.errors import WhyrecError
from whyrec.evaluation import metrics as m
from whyrec.evaluation import statistics
from whyrec.evaluation.statistics import finite_or_none, t_interval
from whyrec.models.base import Recommender
from whyrec.ranking import unseen_top_k


class EvaluationError(WhyrecError):
    """The evaluation cannot run as asked (no test users, bad k, unknown metric…)."""


PerUserMetric = Callable[[np.ndarray, np.ndarray, "EvaluationTarget", int], np.ndarray]
"""(hits, recommended, target, k) → one value per user."""

PER_USER: dict[str, PerUserMetric] = {
    "precision": lambda hits, rec, t, k: m.precision(hits, k),
    "recall": lambda hits, rec, t, k: m.recall(hits, t.n_relevant, k),
    "recall_norm": lambda hits, rec, t, k: m.recall_norm(hits, t.n_relevant, k),
    "ndcg": lambda hits, rec, t, k: m.ndcg(hits, t.n_relevant, k),
    "map": lambda hits, rec, t, k: m.average_precision(hits, t.n_relevant, k),
    "mrr": lambda hits, rec, t, k: m.reciprocal_rank(hits, k),
    "hr": lambda hits, rec, t, k: m.hit_rate(hits, k),
    "f1": lambda hits, rec, t, k: m.f1(hits, t.n_relevant, k),
    "epc": lambda hits, rec, t, k: m.epc(hits, rec, k, t.popularity, t.n_train_users),
    "efd": lambda hits, rec, t, k: m.efd(hits, rec, k, t.popularity),
    "aclt": lambda hits, rec, t, k: m.aclt(rec, k, t.long_tail),
    "aplt": lambda hits, rec, t, k: m.aplt(rec, k, t.long_tail),
    "arp": lambda hits, rec, t, k: m.arp(rec, k, t.popularity),
}
"""Every per-user metric by name: adding one here (and its function in `metrics`) is all
it takes for intervals, paired tests, JSON, the HTML report and `tune --metric`."""

PER_USER_METRICS = tuple(PER_USER)
"""Metrics with one value per user: averaged, given t-intervals and significance tests."""

AGGREGATE_METRICS = ("coverage", "coverage_fraction", "gini", "poprsp", "popreo")
"""Metrics of the whole set of lists: bootstrap intervals, no per-user test."""

METRIC_NAMES = PER_USER_METRICS + AGGREGATE_METRICS

LOWER_IS_BETTER = frozenset({"arp", "gini", "poprsp", "popreo"})
"""Metrics where a smaller value is the desirable one (used when reporting the best)."""

BOOTSTRAP_SAMPLES = 200
DEFAULT_BATCH_SIZE = 512
RARE_BELOW = 5
"""Default cut for the rare-item slice: test items with fewer training interactions."""
SLICE_METRICS = ("recall", "ndcg", "hr", "mrr")
"""Accuracy metrics reported on the rare-item slice."""


def parse_ks(text: str | Iterable[int | str]) -> list[int]:
    """ "10,20" (or a list) → sorted distinct positive ints; anything else is a user error."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    ks: set[int] = set()
    for part in parts:
        raw = str(part).strip()
        try:
            value = int(raw)
        except ValueError:
            raise EvaluationError(f"k must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise EvaluationError(f"k must be at least 1, got {value}")
        ks.add(value)
    if not ks:
        raise EvaluationError("give at least one k, e.g. --k 10,20")
    return sorted(ks)


def parse_metric(key: str) -> tuple[str, int]:
    """ "ndcg@10" → ("ndcg", 10), rejecting unknown names with the list of known ones."""
    name, sep, k_text = key.strip().lower().partition("@")
    if name not in METRIC_NAMES:
        raise EvaluationError(f"unknown metric {name!r}; available: {', '.join(METRIC_NAMES)}")
    if not sep:
        raise EvaluationError(f"give the metric with its cut-off, e.g. {name}@10")
    return name, parse_ks(k_text)[0]


# ----- what every model is evaluated against -------------------------------------------
@dataclass
class EvaluationTarget:
    """The test users of a split, their training rows and held-out items, computed once."""

    users: np.ndarray
    histories: list[np.ndarray]
    train_rows: sp.csr_matrix
    relevant: sp.csr_matrix
    n_relevant: np.ndarray
    popularity: np.ndarray
    long_tail: np.ndarray
    n_train_users: int
    n_items: int

    @classmethod
    def from_split(cls, split: Split) -> EvaluationTarget:
        test_matrix = split.test.matrix
        users = np.flatnonzero(test_matrix.getnnz(axis=1) > 0)
        if len(users) == 0:
            raise EvaluationError(f"the {split.method} split leaves no test users to evaluate")
        train_matrix = split.train.matrix
        all_histories = split.train.histories()
        popularity = split.train.item_popularity()
        relevant = test_matrix[users].tocsr()
        return cls(
            users=users,
            histories=[all_histories[u] for u in users],
            train_rows=train_matrix[users].tocsr(),
            relevant=relevant,
            n_relevant=np.diff(relevant.indptr).astype(np.int64),
            popularity=popularity,
            long_tail=m.long_tail_mask(popularity),
            n_train_users=int((train_matrix.getnnz(axis=1) > 0).sum()),
            n_items=split.train.n_items,
        )

    def rare_items_slice(self, below: int) -> EvaluationTarget | None:
        """The same users' held-out items that had fewer than `below` training interactions.

        Only users holding at least one such item stay, and only those items count as
        relevant: the slice asks "does the model reach items the data barely knows?",
        which popularity cannot answer and cold-start models claim to.
        """
        relevant = self.relevant.tocoo()
        rare = self.popularity[relevant.col] < below
        matrix = sp.csr_matrix(
            (np.ones(int(rare.sum()), dtype=np.float32), (relevant.row[rare], relevant.col[rare])),
            shape=self.relevant.shape,
        )
        rows = np.flatnonzero(matrix.getnnz(axis=1) > 0)
        if len(rows) == 0:
            return None
        sliced = matrix[rows].tocsr()
        return EvaluationTarget(
            users=self.users[rows],
            histories=[self.histories[r] for r in rows],
            train_rows=self.train_rows[rows].tocsr(),
            relevant=sliced,
            n_relevant=np.diff(sliced.indptr).astype(np.int64),
            popularity=self.popularity,
            long_tail=self.long_tail,
            n_train_users=self.n_train_users,
            n_items=self.n_items,
        )

    def sample(self, n: int, seed: int) -> EvaluationTarget:
        """At most `n` of the test users, drawn with the seed (models that are slow per
        user, such as an LLM, are evaluated on the same sample as their peers)."""
        if n >= len(self.users):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self.users), n, replace=False))
        relevant = self.relevant[rows].tocsr()
        return EvaluationTarget(
            users=self.users[rows],
            histories=[self.histories[r] for r in rows],
            train_rows=self.train_rows[rows].tocsr(),
            relevant=relevant,
            n_relevant=np.diff(relevant.indptr).astype(np.int64),
            popularity=self.popularity,
            long_tail=self.long_tail,
            n_train_users=self.n_train_users,
            n_items=self.n_items,
        )

    def rows_of(self, other: EvaluationTarget) -> np.ndarray:
        """Positions in this target of another target's users (a slice of this one)."""
        return np.searchsorted(self.users, other.users)


def rank_all(
    model: Recommender,
    target: EvaluationTarget,
    k: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Top-k lists for every test user, training items excluded, scored in batches."""
    lists = np.empty((len(target.users), k), dtype=np.int64)
    for start in range(0, len(target.users), batch_size):
        stop = min(start + batch_size, len(target.users))
        scores = np.array(model.score(target.histories[start:stop]), dtype=np.float32)
        lists[start:stop] = unseen_top_k(scores, target.train_rows[start:stop], k)
        if on_batch is not None:
            on_batch(stop - start)
    return lists


# ----- metrics over the lists -------------------------------------------------------------
def per_user_metrics(
    recommended: np.ndarray, target: EvaluationTarget, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Every per-user metric at every k, keyed "name@k"."""
    hits = m.hit_matrix(recommended, target.relevant)
    return {
        f"{name}@{k}": metric(hits, recommended, target, k).astype(np.float64)
        for k in ks
        for name, metric in PER_USER.items()
    }


def aggregate_metrics(
    recommended: np.ndarray,
    hits: np.ndarray,
    train_rows: sp.csr_matrix,
    relevant: sp.csr_matrix,
    target: EvaluationTarget,
    k: int,
) -> dict[str, float]:
    """The metrics of the whole set of lists at one k (for a subset of users, too)."""
    count, fraction = m.item_coverage(recommended, k, target.n_items)
    return {
        "coverage": float(count),
        "coverage_fraction": fraction,
        "gini": m.gini(recommended, k, target.n_items),
        "poprsp": m.pop_rsp(recommended, k, target.long_tail, train_rows),
        "popreo": m.pop_reo(hits, recommended, k, target.long_tail, relevant),
    }


@dataclass
class MetricSummary:
    mean: float
    ci95: tuple[float | None, float | None]

    def to_dict(self) -> dict:
        return {"mean": finite_or_none(self.mean), "ci95": list(self.ci95)}


@dataclass
class ModelResult:
    """One model's lists, per-user values and summaries under the protocol."""

    name: str
    model: Recommender
    fit_seconds: float
    score_seconds: float
    per_user: dict[str, np.ndarray]
    summary: dict[str, MetricSummary]
    recommended: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "params": self.model.config.model_dump(),
            "metrics": {key: s.to_dict() for key, s in self.summary.items()},
            "fit_seconds": round(self.fit_seconds, 4),
            "score_seconds": round(self.score_seconds, 4),
        } | (self.model.run_stats() or {})


def summarise(
    recommended: np.ndarray, target: EvaluationTarget, ks: Sequence[int], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, MetricSummary]]:
    """Per-user values and (mean, 95% CI) of every metric at every k."""
    per_user = per_user_metrics(recommended, target, ks)
    summary: dict[str, MetricSummary] = {}
    for k in ks:
        for name in PER_USER_METRICS:
            values = per_user[f"{name}@{k}"]
            summary[f"{name}@{k}"] = MetricSummary(float(values.mean()), t_interval(values))
    hits = m.hit_matrix(recommended, target.relevant)
    rng = np.random.default_rng(seed)
    samples = [
        rng.integers(0, len(target.users), len(target.users)) for _ in range(BOOTSTRAP_SAMPLES)
    ]
    for k in ks:
        point = aggregate_metrics(recommended, hits, target.train_rows, target.relevant, target, k)
        boot = [
            aggregate_metrics(
                recommended[idx], hits[idx], target.train_rows[idx], target.relevant[idx], target, k
            )
            for idx in samples
        ]
        for name in AGGREGATE_METRICS:
            draws = np.array([b[name] for b in boot], dtype=np.float64)
            draws = draws[np.isfinite(draws)]
            interval: tuple[float | None, float | None] = (None, None)
            if len(draws) and math.isfinite(point[name]):
                # A resample holds ~63% distinct users, so set-level statistics such as
                # coverage are biased low under the bootstrap; shift the percentile
                # interval by the estimated bias so it is centred on the observed value.
                shift = point[name] - float(draws.mean())
                low, high = np.percentile(draws, [2.5, 97.5]) + shift
                interval = (float(low), float(high))
            summary[f"{name}@{k}"] = MetricSummary(point[name], interval)
    ordered = {f"{name}@{k}": summary[f"{name}@{k}"] for k in ks for name in METRIC_NAMES}
    return per_user, ordered


def slice_summary(
    result: ModelResult, target: EvaluationTarget, sliced: EvaluationTarget, ks: Sequence[int]
) -> dict[str, MetricSummary]:
    """Accuracy of a model's lists on a slice of the test set (same lists, fewer relevant)."""
    recommended = result.recommended[target.rows_of(sliced)]
    per_user = per_user_metrics(recommended, sliced, ks)
    return {
        f"{name}@{k}": MetricSummary(float(values.mean()), t_interval(values))
        for k in ks
        for name in SLICE_METRICS
        for values in [per_user[f"{name}@{k}"]]
    }


def evaluate_model(
    name: str,
    model: Recommender,
    split: Split,
    ks: Sequence[int],
    *,
    seed: int = 0,
    target: EvaluationTarget | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    fitted: bool = False,
) -> ModelResult:
    """Fit (unless `fitted`) on the split's train set, rank every test user, measure."""
    ks = parse_ks(ks)
    target = target or EvaluationTarget.from_split(split)
    fit_seconds = 0.0
    if not fitted:
        started = time.perf_counter()
        model.fit(split.train)
        fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    recommended = rank_all(model, target, max(ks), batch_size, on_batch)
    score_seconds = time.perf_counter() - started
    per_user, summary = summarise(recommended, target, ks, seed)
    return ModelResult(name, model, fit_seconds, score_seconds, per_user, summary, recommended)


# ----- comparing models -----------------------------------------------------------------------
def paired_tests(a: ModelResult, b: ModelResult) -> list[dict]:
    """Paired t-test and Wilcoxon signed-rank test on every shared per-user metric."""
    rows = []
    for key in a.per_user:
        if key not in b.per_user:
            continue
        x, y = a.per_user[key], b.per_user[key]
        tests = statistics.paired_tests(x, y)
        rows.append(
            {
                "model_a": a.name,
                "model_b": b.name,
                "metric": key,
                "mean_a": float(x.mean()),
                "mean_b": float(y.mean()),
                "mean_difference": float((x - y).mean()),
                **tests,
                "n_users": len(x),
            }
        )
    return rows


def significance(results: Sequence[ModelResult]) -> list[dict]:
    """Paired tests for every pair of models, in the order the models were given."""
    return [row for a, b in itertools.combinations(results, 2) for row in paired_tests(a, b)]


@dataclass
class EvaluationReport:
    """Everything `whyrec evaluate` prints, writes as JSON and renders as HTML."""

    dataset: str
    split: dict
    ks: list[int]
    seed: int
    results: list[ModelResult]
    significance: list[dict]
    explanations: dict[str, dict] | None = None
    """Explanation faithfulness per model (`whyrec evaluate --explanations`)."""
    rare_items: dict | None = None
    """Accuracy on held-out items with few training interactions (the cold-ish slice)."""

    def to_dict(self) -> dict:
        data = {
            "dataset": self.dataset,
            "split": self.split,
            "models": {r.name: r.to_dict() for r in self.results},
            "significance": self.significance,
        }
        if self.explanations is not None:
            data["explanations"] = self.explanations
        if self.rare_items is not None:
            data["rare_items"] = self.rare_items
        return data


def describe_split(split: Split, target: EvaluationTarget, filtering: dict | None = None) -> dict:
    """The split facts a reader needs to compare numbers (JSON-friendly)."""
    return {
        "method": split.method,
        "params": {
            k: (v if isinstance(v, int | float | str) else str(v)) for k, v in split.params.items()
        },
        "filtering": filtering or {},
        "train_interactions": len(split.train),
        "test_interactions": len(split.test),
        "test_users": len(target.users),
        "items": target.n_items,
        "short_head_items": int((~target.long_tail).sum()),
        "dropped": split.dropped,
        "protocol": {
            "ranking": "full ranking over all items, training items excluded",
            "relevance": "binary: every held-out interaction is relevant",
            "ndcg": "binary gains, ideal DCG over min(|relevant|, k)",
            "gini": "G (RecBole convention; Elliot reports 1-G)",
            "short_head": (
                f"most popular items covering {m.SHORT_HEAD_SHARE:.0%} of training interactions"
            ),
            "ci95_per_user_metrics": "Student-t interval of the mean over test users",
            "ci95_aggregate_metrics": (
                f"bias-shifted percentile interval of a {BOOTSTRAP_SAMPLES}-sample "
                "per-user bootstrap"
            ),
            "significance": "paired t-test and Wilcoxon signed-rank test over test users",
        },
    }


def evaluate_models(
    models: dict[str, Recommender],
    split: Split,
    ks: Sequence[int],
    *,
    seed: int = 0,
    filtering: dict | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_event: Callable[[str, str, int], None] | None = None,
    rare_below: int = RARE_BELOW,
    max_users: int | None = None,
) -> EvaluationReport:
    """Evaluate several models on one split under one protocol, plus paired tests.

    `on_event(model_name, stage, n)` reports progress: ("fit", 0) before a fit and
    ("score", n_users) after each scored batch. `max_users` evaluates every model on
    the same sample of that many test users, drawn with the seed.
    """
    ks = parse_ks(ks)
    target = EvaluationTarget.from_split(split)
    if max_users is not None:
        target = target.sample(max_users, seed)
    results = []
    for name, model in models.items():
        if on_event:
            on_event(name, "fit", 0)
        started = time.perf_counter()
        model.fit(split.train)
        fit_seconds = time.perf_counter() - started

        def report_batch(n: int, name: str = name) -> None:
            if on_event:
                on_event(name, "score", n)

        result = evaluate_model(
            name,
            model,
            split,
            ks,
            seed=seed,
            target=target,
            batch_size=batch_size,
            on_batch=report_batch,
            fitted=True,
        )
        result.fit_seconds = fit_seconds
        results.append(result)
    described = describe_split(split, target, filtering)
    if max_users is not None:
        everyone = int((split.test.matrix.getnnz(axis=1) > 0).sum())
        described["sampled_users"] = {"of": everyone, "seed": seed}
    return EvaluationReport(
        dataset=split.train.name,
        split=described,
        ks=ks,
        seed=seed,
        results=results,
        significance=significance(results),
        rare_items=rare_items_report(results, target, ks, rare_below),
    )


def rare_items_report(
    results: Sequence[ModelResult], target: EvaluationTarget, ks: Sequence[int], below: int
) -> dict:
    """Every model's accuracy on the rare-item slice, in the JSON shape of `models`."""
    sliced = target.rare_items_slice(below)
    report: dict = {
        "below": below,
        "definition": (
            f"held-out items with fewer than {below} training interactions; users without "
            "one are left out, other held-out items count as not relevant"
        ),
        "test_users": 0 if sliced is None else len(sliced.users),
        "test_interactions": 0 if sliced is None else int(sliced.n_relevant.sum()),
        "models": {},
    }
    if sliced is not None:
        for result in results:
            summary = slice_summary(result, target, sliced, ks)
            report["models"][result.name] = {
                "metrics": {key: s.to_dict() for key, s in summary.items()}
            }
    return report
