"""`whyrec evaluate` and `whyrec tune` end to end through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import exit_code

CORE = ["--data", "ml-latest-small", "--kcore", "20"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    argv = [
        "evaluate",
        *CORE,
        "--models",
        "pop,itemknn,ease",
        "--split",
        "loo",
        "--k",
        "10,20",
        "--seed",
        "0",
        "--param",
        "ease.reg=500",
        "--param",
        "itemknn.neighbors=50",
        "--json",
        str(folder / "out.json"),
        "--report",
        str(folder / "out.html"),
        "--rare-below",
        "30",
    ]
    code = exit_code(argv)
    return code, folder


def test_evaluate_writes_json_of_the_documented_shape(evaluated):
    code, folder = evaluated
    assert code == 0
    result = json.loads((folder / "out.json").read_text())
    assert list(result) == ["dataset", "split", "models", "significance", "rare_items"]
    # on the 20-core data, "rare" must mean fewer than 30 training interactions to be non-empty
    rare = result["rare_items"]
    assert rare["below"] == 30 and rare["test_users"] > 0 and rare["test_interactions"] > 0
    assert set(rare["models"]) == {"popularity", "itemknn", "ease"}
    for model in rare["models"].values():
        assert 0 <= model["metrics"]["ndcg@10"]["mean"] <= 1
        assert 0 <= model["metrics"]["recall@20"]["mean"] <= 1
    assert result["dataset"] == "ml-latest-small"
    assert result["split"]["method"] == "loo"
    assert result["split"]["filtering"] == {"min_rating": None, "kcore": 20}
    assert list(result["models"]) == ["popularity", "itemknn", "ease"]
    ease = result["models"]["ease"]
    assert ease["params"] == {"reg": 500.0}
    assert result["models"]["itemknn"]["params"]["neighbors"] == 50
    assert ease["fit_seconds"] > 0 and ease["score_seconds"] > 0
    for key in (
        "ndcg@10",
        "recall@20",
        "hr@10",
        "map@10",
        "mrr@10",
        "coverage@10",
        "arp@10",
        "popreo@10",
        "gini@10",
        "epc@10",
        "aplt@10",
    ):
        entry = ease["metrics"][key]
        assert set(entry) == {"mean", "ci95"} and len(entry["ci95"]) == 2, key
    assert (
        ease["metrics"]["ndcg@10"]["mean"]
        > result["models"]["popularity"]["metrics"]["ndcg@10"]["mean"]
    )
    pairs = {(s["model_a"], s["model_b"]) for s in result["significance"]}
    assert pairs == {("popularity", "itemknn"), ("popularity", "ease"), ("itemknn", "ease")}
    assert all(0 <= s["t_pvalue"] <= 1 for s in result["significance"])


def test_evaluate_writes_a_self_contained_html_report(evaluated):
    _, folder = evaluated
    page = (folder / "out.html").read_text()
    # three charts of the whole test set, and one of the rare-item slice (non-empty here)
    assert page.count("data:image/png;base64,") == 4
    assert "Rare held-out items" in page or "rare" in page.lower()
    assert "<script" not in page and "<link" not in page and "src='http" not in page
    for fact in ("loo", "ndcg@10", "ideal DCG over min(|relevant|, k)", "RecBole", "ease"):
        assert fact in page
    assert not list(folder.glob(".out.*"))  # no temporary files left behind


def test_evaluate_prints_a_table(capsys, evaluated):
    # The module fixture ran before capture; run a quick one here to see the output.
    assert exit_code(["evaluate", *CORE, "--models", "pop", "--k", "5"]) == 0
    printed = capsys.readouterr().out
    assert "ndcg@5" in printed and "popularity" in printed and "±" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "pop,nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["--models", "pop", "--k", "0"], "k must be at least 1"),
        (["--models", "pop", "--k", "10,abc"], "k must be a positive integer"),
        (["--models", "pop", "--param", "ease.reg=5"], "which is not being run"),
        (["--models", "ease", "--param", "ease.lambda=5"], "invalid parameters for ease"),
        (["--models", "pop", "--split", "sideways"], "--split must be one of"),
        (["--models", "pop,pop"], "listed twice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_no_output(tmp_path, capsys, argv, message):
    out = tmp_path / "out.json"
    code = exit_code(
        ["evaluate", *CORE, *argv, "--json", str(out), "--report", str(tmp_path / "r.html")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_fixed_split_from_files(tmp_path, ml_core):
    from whyrec.data.splits import split

    files = split(ml_core, "user-temporal", seed=1)
    files.train.interactions.to_csv(tmp_path / "train.csv", index=False)
    files.test.interactions.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "fixed.json"
    argv = ["evaluate", "--data", "ml-latest-small", "--models", "pop", "--split", "fixed"]
    files_args = ["--train-file", str(tmp_path / "train.csv"), "--test-file"]
    assert exit_code([*argv, *files_args, str(tmp_path / "test.csv"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["split"]["method"] == "fixed"
    assert result["split"]["test_users"] == files.test.interactions["user_id"].nunique()


def _tiny_dataset(folder: Path, users: dict[str, list[str]]) -> Path:
    folder.mkdir()
    items = sorted({i for history in users.values() for i in history})
    (folder / "items.csv").write_text("item_id,title\n" + "".join(f"{i},Item {i}\n" for i in items))
    rows = [
        f"{u},{i},4,{t}" for u, history in users.items() for t, i in enumerate(history, start=1)
    ]
    (folder / "interactions.csv").write_text(
        "user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n"
    )
    return folder


@pytest.mark.parametrize(
    ("users", "message"),
    [
        # one user with a held-out item whose item is known from training: 1 test user
        ({"a": ["1", "2", "3"], "b": ["3"], "c": ["1"]}, "leaves 1 test user(s)"),
        # the only held-out item was never seen in training: nothing left to test
        ({"a": ["1", "2", "3"], "b": ["1"], "c": ["2"]}, "empty test set"),
    ],
)
def test_a_dataset_too_small_to_evaluate_is_refused(tmp_path, capsys, users, message):
    data = _tiny_dataset(tmp_path / "tiny", users)
    out = tmp_path / "out.json"
    code = exit_code(["evaluate", "--data", str(data), "--models", "pop", "--json", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_tune_picks_on_validation_and_reports_test_once(tmp_path, capsys):
    out = tmp_path / "tune.json"
    argv = ["tune", *CORE, "--model", "ease", "--grid", "reg=50,500", "--split", "loo"]
    assert exit_code([*argv, "--metric", "ndcg@10", "--json", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    result = json.loads(out.read_text())
    assert [row["params"] for row in result["grid"]] == [{"reg": "50"}, {"reg": "500"}]
    values = [row["validation"] for row in result["grid"]]
    best = result["best"]
    assert best["validation"] == max(values)
    assert best["params"] == result["grid"][values.index(max(values))]["params"]
    assert f"best: reg={best['params']['reg']}" in printed
    assert 0 < best["test"] < 1


def test_tune_rejects_unknown_metric_and_parameter(capsys):
    base = ["tune", *CORE, "--model", "ease"]
    assert exit_code([*base, "--grid", "reg=1,2", "--metric", "auc@10"]) == 2
    assert "unknown metric 'auc'" in capsys.readouterr().err
    assert exit_code([*base, "--grid", "lambda=1,2"]) == 2
    assert "invalid parameters for ease" in capsys.readouterr().err


def test_evaluate_with_explanations(tmp_path):
    """`--explanations` adds faithfulness per model to the JSON and a section to the report."""
    import json as _json

    from whyrec.cli import main as _main

    out, report = tmp_path / "ev.json", tmp_path / "ev.html"
    try:
        _main(
            [
                "evaluate",
                "--data",
                "ml-latest-small",
                "--kcore",
                "20",
                "--models",
                "pop,ease",
                "--split",
                "loo",
                "--k",
                "10",
                "--explanations",
                "--explain-users",
                "40",
                "--json",
                str(out),
                "--report",
                str(report),
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    explanations = _json.loads(out.read_text())["explanations"]
    ease = explanations["ease"]
    assert {
        "pn@10",
        "ps@10",
        "fns@10",
        "pn@10_random",
        "ps@10_random",
        "mep@10",
        "deletion_curve",
        "insertion_curve",
    } <= set(ease)
    assert ease["pn@10"] > ease["pn@10_random"]
    assert explanations["popularity"]["pn@10"] is None  # nothing cited, nothing to remove
    assert "Explanation faithfulness" in report.read_text()
