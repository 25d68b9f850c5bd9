"""The command line end to end: train, recommend, data commands and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import run
from whyrec.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "ease"
    try:
        main(
            [
                "train",
                "--data",
                "ml-latest-small",
                "--model",
                "ease",
                "--kcore",
                "20",
                "--param",
                "reg=200",
                "--no-calibrate",
                "--out",
                str(path),
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    return path


def test_recommend_for_user_as_json(bundle, capsys):
    code, out, _ = run(
        capsys, "recommend", "--bundle", str(bundle), "--user", "1", "-k", "5", "--json"
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["user"] == "1"
    assert [i["rank"] for i in payload["items"]] == [1, 2, 3, 4, 5]
    scores = [i["score"] for i in payload["items"]]
    assert scores == sorted(scores, reverse=True)
    first = payload["items"][0]
    assert set(first) == {"rank", "item_id", "title", "score", "because"}
    assert first["because"] and 0 < first["because"][0]["share"] <= 1
    assert {"item_id", "title", "share"} <= set(first["because"][0])


def test_recommend_from_titles_with_filters(bundle, capsys):
    code, out, _ = run(
        capsys,
        "recommend",
        "--bundle",
        str(bundle),
        "--history",
        "Toy Story (1995),Aladdin",
        "--with",
        "genres=Animation",
        "--years",
        "1990-2005",
        "--json",
    )
    assert code == 0
    items = json.loads(out)["items"]
    assert items and "Toy Story (1995)" not in [i["title"] for i in items]
    cited = {c["title"] for i in items for c in i["because"]}
    assert cited <= {"Toy Story (1995)", "Aladdin (1992)"}


def test_recommend_table(bundle, capsys):
    code, out, _ = run(capsys, "recommend", "--bundle", str(bundle), "--user", "1")
    assert code == 0 and "because you liked" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "999999"], "unknown user"),
        (["--history", "Qwxz Plorfing Vrumble"], "did you mean"),
        (["--user", "1", "--history", "Heat"], "exactly one"),
        (["--user", "1", "--with", "genres=Comedi"], "did you mean Comedy"),
    ],
)
def test_user_mistakes_are_one_line(bundle, capsys, args, message):
    code, _, err = run(capsys, "recommend", "--bundle", str(bundle), *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0 or len(err.strip().splitlines()) <= 2


def test_bundle_problems(bundle, tmp_path, capsys):
    code, _, err = run(capsys, "recommend", "--bundle", str(tmp_path), "--user", "1")
    assert code == 2 and "not a whyrec bundle" in err
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((bundle / "bundle.json").read_text())
    (old / "bundle.json").write_text(json.dumps({**meta, "format": 0, "whyrec_version": "0.0.1"}))
    code, _, err = run(capsys, "recommend", "--bundle", str(old), "--user", "1")
    assert code == 2 and "retrain" in err


def test_train_refuses_to_overwrite_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("precious")
    code, _, err = run(
        capsys, "train", "--model", "popularity", "--no-calibrate", "--out", str(tmp_path)
    )
    assert code == 2 and "not a whyrec bundle" in err
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_data_commands(tmp_path, capsys):
    code, out, _ = run(capsys, "data", "info", "ml-latest-small", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["users"] == 610 and info["interactions"] == 100_836
    assert set(info["attribute_fields"]) == {"genres", "decade", "tags"}
    code, out, _ = run(
        capsys, "data", "split", "ml-latest-small", "--method", "loo", "--out", str(tmp_path / "s")
    )
    assert code == 0 and (tmp_path / "s" / "test.csv").exists()
    code, _, err = run(capsys, "data", "fetch", "ml-nope")
    assert code == 2 and "unknown dataset" in err


def test_installed_command_runs_as_a_process(bundle):
    """The console script itself: exit codes and no traceback."""
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "whyrec.cli",
            "recommend",
            "--bundle",
            str(bundle),
            "--user",
            "1",
            "-k",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["items"]) == 3
    bad = subprocess.run(
        [sys.executable, "-m", "whyrec.cli", "recommend", "--bundle", str(bundle), "--user", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_recommend_for_a_description(bundle, capsys):
    def described(text: str, *options: str) -> tuple[int, str]:
        code, out, _ = run(capsys, "recommend", "--bundle", str(bundle), "--query", text, *options)
        return code, out

    code, out = described(
        "a funny animated film for kids", "--years", "1990-2005", "-k", "5", "--json"
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["query"] == "a funny animated film for kids" and len(payload["items"]) == 5
    code, out = described("a pixar film", "-k", "3", "--explain")
    assert code == 0 and "3 recommendations for “a pixar film”" in out
    assert out.count('It fits "a pixar film"') == 3 and "not explained" not in out
    code, _, err = run(capsys, "recommend", "--bundle", str(bundle), "--query", " ")
    assert code != 0 and "--query is empty" in err
