"""Faithfulness measurement: cited evidence must matter more than random evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from whyrec.data.splits import split
from whyrec.explain.fidelity import (
    counterfactual_ranks,
    explanation_fidelity,
    mean_explainability_precision,
)
from whyrec.models import EASE, Popularity
from whyrec.models.base import histories_to_csr
from whyrec.ranking import top_k


@pytest.fixture(scope="module")
def loo(ml_core):
    return split(ml_core, "loo", seed=42)


@pytest.fixture(scope="module")
def ease(loo) -> EASE:
    return EASE().fit(loo.train)


@pytest.fixture(scope="module")
def fidelity(ease, loo) -> dict:
    return explanation_fidelity(ease, loo, k=10, n_users=50, seed=0)


def test_cited_evidence_is_necessary_and_sufficient_unlike_random(fidelity):
    assert fidelity["settings"]["attribution"] == "exact"
    assert fidelity["settings"]["users"] == 50
    assert fidelity["settings"]["explained_items"] > 450
    measures = ("pn@10", "ps@10", "fns@10", "pn@10_random", "ps@10_random", "fns@10_random")
    for key in (*measures, "mep@10", "mep@10_random"):
        assert 0.0 <= fidelity[key] <= 1.0
    assert fidelity["pn@10"] > 3 * fidelity["pn@10_random"]
    assert fidelity["ps@10"] > fidelity["ps@10_random"]
    assert fidelity["fns@10"] > fidelity["fns@10_random"]
    assert fidelity["mep@10"] > fidelity["mep@10_random"]


def test_curves_move_the_right_way(fidelity):
    deletion = fidelity["deletion_curve"]
    assert [p["removed"] for p in deletion] == [1, 2, 3, 4, 5]
    in_top = [p["in_top10"] for p in deletion]
    assert in_top == sorted(in_top, reverse=True)
    assert all(p["in_top10"] < p["in_top10_random"] for p in deletion)
    assert 1 - deletion[2]["in_top10"] == pytest.approx(fidelity["pn@10"])
    insertion = fidelity["insertion_curve"]
    assert [p["added"] for p in insertion] == [0, 1, 2, 3, 4, 5]
    assert insertion[0]["in_top10"] == insertion[0]["in_top10_random"]
    assert insertion[3]["in_top10"] == pytest.approx(fidelity["ps@10"])
    assert insertion[5]["mean_rank"] < insertion[0]["mean_rank"]


def test_fidelity_is_reproducible_with_a_seed(ease, loo):
    first = explanation_fidelity(ease, loo, k=5, n_users=12, seed=3)
    again = explanation_fidelity(ease, loo, k=5, n_users=12, seed=3)
    assert again["pn@5_random"] == first["pn@5_random"]
    assert again["deletion_curve"] == first["deletion_curve"]
    assert again["insertion_curve"] == first["insertion_curve"]


def test_counterfactual_rank_of_unchanged_history_is_the_list_rank(ease, loo):
    history = np.unique(loo.train.history(loo.train.user_ids[0]))
    scores = ease.score([history])[0]
    allowed = np.ones(len(scores), dtype=bool)
    allowed[history] = False
    listed = top_k(scores, 10, allowed)
    seen = histories_to_csr([history] * len(listed), ease.n_items_)
    ranks = counterfactual_ranks(ease, [history] * len(listed), listed, seen)
    assert ranks.tolist() == list(range(1, 11))


def test_mep_matches_a_hand_count():
    # users 0 and 1 are alike, 2 is like 1 only through item 2, 3 shares nothing
    matrix = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 0],
                [1, 1, 1, 0],
                [0, 0, 1, 1],
                [0, 0, 0, 0],
            ],
            dtype=np.float32,
        )
    )
    # user 0's 2 neighbours: user 1 (cos .82) and nobody else with similarity > 0
    lists = [np.array([2, 3])]
    half = mean_explainability_precision(matrix, np.array([0]), lists, neighbours=2, threshold=0.5)
    assert half == pytest.approx(0.5)  # item 2: 1 of 2 neighbours; item 3: none
    strict = mean_explainability_precision(
        matrix, np.array([0]), lists, neighbours=2, threshold=0.6
    )
    assert strict == 0.0


def test_a_model_without_personal_evidence_has_nothing_to_cite(loo):
    model = Popularity().fit(loo.train)
    result = explanation_fidelity(model, loo, k=5, n_users=10, seed=0)
    assert result["settings"]["attribution"] == "occlusion"
    assert result["settings"]["explained_items"] == 0
    assert np.isnan(result["pn@5"]) and np.isnan(result["ps@5"])


def test_cli_explain_eval_writes_json(tmp_path, capsys):
    from whyrec.cli import main

    target = tmp_path / "fidelity.json"
    args = ["explain-eval", "--data", "ml-latest-small", "--kcore", "20", "--n-users", "15"]
    try:
        main([*args, "--json", str(target)])
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0
    result = json.loads(target.read_text())
    assert result["settings"]["users"] == 15 and result["settings"]["model"].startswith("EASE")
    assert f"{result['pn@10']:.3f}" in printed and "pn@10" in printed
