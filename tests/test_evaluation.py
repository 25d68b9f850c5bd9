"""The full-ranking protocol on real data: ranking rules, intervals, tests, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from whyrec.data.splits import split
from whyrec.evaluation.protocol import (
    METRIC_NAMES,
    EvaluationError,
    EvaluationTarget,
    evaluate_model,
    evaluate_models,
    paired_tests,
    parse_ks,
    parse_metric,
    rank_all,
    t_interval,
)
from whyrec.models import EASE, Popularity
from whyrec.ranking import top_k_rows


@pytest.fixture(scope="module")
def loo(ml_core):
    return split(ml_core, "loo", seed=0)


@pytest.fixture(scope="module")
def target(loo):
    return EvaluationTarget.from_split(loo)


@pytest.fixture(scope="module")
def report(loo):
    return evaluate_models({"pop": Popularity(), "ease": EASE()}, loo, [10, 20], seed=0)


def test_top_k_rows_matches_a_full_sort_with_position_tie_breaks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (9, 25)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[0, 3] = np.nan
    for k in (1, 4, 10, 25, 30):
        best = top_k_rows(scores, k)
        for row in range(scores.shape[0]):
            finite = [i for i in range(25) if np.isfinite(scores[row, i])]
            expected = sorted(finite, key=lambda i: (-scores[row, i], i))[:k]
            assert best[row].tolist() == expected + [-1] * (k - len(expected))


def test_top_10_is_the_prefix_of_top_20_even_with_ties(loo, target):
    model = Popularity().fit(loo.train)
    assert np.array_equal(rank_all(model, target, 20)[:, :10], rank_all(model, target, 10))


def test_training_items_are_never_ranked(loo, target):
    lists = rank_all(EASE().fit(loo.train), target, 20, batch_size=100)
    for row in range(len(target.users)):
        seen = target.train_rows.indices[
            target.train_rows.indptr[row] : target.train_rows.indptr[row + 1]
        ]
        assert not np.isin(lists[row], seen).any()
    assert (lists >= 0).all()


def test_target_holds_every_user_with_held_out_items(loo, target):
    assert len(target.users) == loo.test.interactions["user_id"].nunique()
    assert target.n_relevant.min() == 1  # leave-one-out
    assert target.long_tail.sum() > (~target.long_tail).sum()


def test_ease_beats_popularity_significantly_on_loo(report):
    pop, ease = report.results
    assert ease.summary["ndcg@10"].mean > 1.5 * pop.summary["ndcg@10"].mean
    test = next(t for t in report.significance if t["metric"] == "ndcg@10")
    assert (test["model_a"], test["model_b"]) == ("pop", "ease")
    assert test["mean_difference"] < 0
    assert test["t_pvalue"] < 0.01 and test["wilcoxon_pvalue"] < 0.01


def test_every_metric_at_every_k_with_interval_around_mean(report):
    for result in report.results:
        assert list(result.summary) == [f"{m}@{k}" for k in (10, 20) for m in METRIC_NAMES]
        for key, summary in result.summary.items():
            low, high = summary.ci95
            if low is not None:
                assert low <= summary.mean + 1e-9 and summary.mean <= high + 1e-9, key
    pop = report.results[0]
    assert pop.summary["aplt@10"].mean == 0.0  # popularity recommends only the short head
    assert pop.summary["recall@10"].mean == pytest.approx(pop.summary["hr@10"].mean)
    assert 0.9 < pop.summary["gini@10"].mean <= 1.0


def test_t_interval_is_the_textbook_one():
    values = np.array([0.0, 1.0, 0.5, 0.25, 0.75])
    low, high = t_interval(values)
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))


def test_same_seed_gives_the_same_report(loo, report):
    again = evaluate_models({"pop": Popularity(), "ease": EASE()}, loo, [10, 20], seed=0)
    first, second = report.to_dict(), again.to_dict()
    for name in ("pop", "ease"):
        assert first["models"][name]["metrics"] == second["models"][name]["metrics"]
    assert first["significance"] == second["significance"]


def test_a_model_compared_with_itself_is_not_significant(loo, target):
    result = evaluate_model("pop", Popularity(), loo, [10], target=target)
    rows = paired_tests(result, result)
    assert {row["t_pvalue"] for row in rows} == {1.0}
    assert {row["wilcoxon_pvalue"] for row in rows} == {1.0}


@pytest.mark.parametrize("text", ["0", "-5", "ten", "10.5", ""])
def test_bad_k_values_are_user_errors(text):
    with pytest.raises(EvaluationError):
        parse_ks(text)


def test_ks_are_sorted_and_unique():
    assert parse_ks("20, 10,10") == [10, 20]


def test_metric_names_are_checked():
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    with pytest.raises(EvaluationError, match="unknown metric"):
        parse_metric("accuracy@10")
    with pytest.raises(EvaluationError, match="cut-off"):
        parse_metric("ndcg")


def test_split_without_test_users_is_refused(loo):
    empty = split(loo.train, "loo", seed=0)
    empty.test = loo.test.with_interactions(loo.test.interactions.iloc[:0])
    with pytest.raises(EvaluationError, match="no test users"):
        EvaluationTarget.from_split(empty)


def _rare_cut(target) -> int:
    """A cut that puts about a fifth of the held-out items of the 20-core data in the slice."""
    return int(np.percentile(target.popularity[target.relevant.indices], 20)) + 1


def test_rare_item_slice_keeps_only_rarely_trained_held_out_items(target):
    below = _rare_cut(target)
    sliced = target.rare_items_slice(below)
    assert sliced is not None and 0 < len(sliced.users) <= len(target.users)
    rows = target.rows_of(sliced)
    np.testing.assert_array_equal(target.users[rows], sliced.users)
    for position, row in enumerate(rows):
        held_out = target.relevant[row].indices
        expected = held_out[target.popularity[held_out] < below]
        assert sorted(sliced.relevant[position].indices) == sorted(expected)
    assert target.rare_items_slice(0) is None  # no item has fewer than 0 interactions


def test_rare_item_report_recomputes_recall_from_the_lists(loo, target):
    models = {"pop": Popularity(), "ease": EASE()}
    report = evaluate_models(models, loo, [10], seed=0, rare_below=_rare_cut(target))
    rare = report.rare_items
    sliced = target.rare_items_slice(rare["below"])
    assert rare["test_users"] == len(sliced.users)
    for result in report.results:
        lists = result.recommended[target.rows_of(sliced), :10]
        recall = np.mean(
            [
                len(set(lists[i]) & set(sliced.relevant[i].indices)) / sliced.n_relevant[i]
                for i in range(len(sliced.users))
            ]
        )
        got = rare["models"][result.name]["metrics"]["recall@10"]["mean"]
        assert got == pytest.approx(recall)
    pop, ease = (rare["models"][n]["metrics"]["recall@10"]["mean"] for n in ("pop", "ease"))
    assert ease > pop  # popularity ranks the rarely seen items last
