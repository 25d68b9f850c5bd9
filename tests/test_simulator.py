"""Simulated users: protocol, metrics and the CLI's JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.cli import main
from whyrec.data.splits import split
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.evaluation.conversational import simulate
from whyrec.evaluation.simulated_users import episodes_from_targets, hdcg
from whyrec.models import EASE


@pytest.fixture(scope="module")
def engine(ml_core):
    held = split(ml_core, "loo", seed=0)
    return Engine(Bundle(EASE(reg=200.0).fit(held.train), held.train, test=held.test))


def test_hdcg_formula():
    assert hdcg(1, 1) == pytest.approx(1.0)
    expected = 1 / math.log2(5) + (1 / math.log2(4) - 1 / math.log2(5)) / math.log2(4)
    assert hdcg(3, 3) == pytest.approx(expected)


def test_policies_on_the_same_episodes(engine):
    episodes = episodes_from_targets(
        engine, engine.bundle.test.interactions, 60, np.random.default_rng(0)
    )
    report = simulate(engine, episodes, ["ours", "recommend-only", "random"], max_turns=10)
    assert report["episodes"] == 60
    assert set(report["success_rate_at"]) == {"5", "10"}
    per = report["policies"]
    assert per["ours"]["success_rate_at"]["10"] >= per["recommend-only"]["success_rate_at"]["10"]
    assert per["ours"]["success_rate_at"]["10"] > per["random"]["success_rate_at"]["10"]
    assert 1 <= per["ours"]["average_turns"] <= 10
    paired = report["paired_vs_ours"]["recommend-only"]
    low, high = paired["sr@10_diff_ci95"]
    assert low <= paired["sr@10_diff"] <= high
    assert paired["sr@10_diff"] == pytest.approx(
        per["ours"]["success_rate_at"]["10"] - per["recommend-only"]["success_rate_at"]["10"]
    )
    again = simulate(engine, episodes, ["ours"], max_turns=10)
    assert again["success_rate_at"] == per["ours"]["success_rate_at"]  # seeded


def test_language_mode_runs_through_understanding(engine):
    episodes = episodes_from_targets(
        engine, engine.bundle.test.interactions, 25, np.random.default_rng(1)
    )
    language = simulate(
        engine, episodes, ["ours"], user_mode="language", max_turns=10, semantic_wishes=False
    )
    attribute = simulate(engine, episodes, ["ours"], user_mode="attribute", max_turns=10)
    assert language["success_rate_at"]["10"] >= attribute["success_rate_at"]["10"] - 0.25


def test_bad_requests(engine):
    episodes = episodes_from_targets(
        engine, engine.bundle.test.interactions, 2, np.random.default_rng(0)
    )
    with pytest.raises(WhyrecError, match="unknown policy"):
        simulate(engine, episodes, ["clever"])
    with pytest.raises(WhyrecError, match="user mode"):
        simulate(engine, episodes, ["ours"], user_mode="telepathy")


def test_simulate_cli_with_targets_file(tmp_path, capsys):
    bundle = tmp_path / "b"
    main_ok = [
        "train",
        "--data",
        "ml-latest-small",
        "--kcore",
        "20",
        "--holdout",
        "loo",
        "--no-calibrate",
        "--out",
        str(bundle),
    ]
    with _no_exit():
        main(main_ok)
    targets = tmp_path / "targets.csv"
    targets.write_text("user_id,item_id\n1,1\nnew-user,2\n")
    out = tmp_path / "sim.json"
    with _no_exit():
        main(
            [
                "simulate",
                "--bundle",
                str(bundle),
                "--targets",
                str(targets),
                "--episodes",
                "2",
                "--policies",
                "ours,recommend-only",
                "--json",
                str(out),
            ]
        )
    report = json.loads(out.read_text())
    assert {"episodes", "success_rate_at", "average_turns", "hdcg", "policies"} <= set(report)
    assert report["episodes"] == 2
    with _no_exit():
        main(
            [
                "simulate",
                "--bundle",
                str(bundle),
                "--episodes",
                "3",
                "--max-turns",
                "5",
                "--policies",
                "ours",
                "--json",
                str(out),
            ]
        )
    assert set(json.loads(out.read_text())["success_rate_at"]) == {"5"}


class _no_exit:
    """Run main() and fail on a non-zero exit."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is SystemExit:
            assert not exc.code, exc.code
            return True
        return False
