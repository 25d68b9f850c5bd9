"""Every command, run with careless inputs: exit code 2, one clear line, no traceback.

The table is the list of mistakes people make (a fraction of 5, an output under a file,
k = 10^9, a bundle.json that is a list, non-UTF-8 bytes on stdin, ...). Each runs
in-process on a tiny synthetic dataset and bundle made once, and is refused before any
real work, so the whole table takes seconds.
"""

from __future__ import annotations

import io
import shlex
import sys

import pytest

from cli_helpers import exit_code, run

NEAR_MISSES = ";".join(f"Qwzxv Plorkt {n}" for n in range(25))
"""More loose titles than one history may ask to match."""

# (placeholders: {data} a synthetic dataset, {bundle} a bundle trained on it, {file} a
# plain file, {tmp} a scratch folder, {badjson} a bundle folder whose bundle.json is a
# JSON list, {corrupt} one whose bundle.json is not JSON, {nonbundle} a folder that holds
# other files, {empty} an empty folder, {ratings} data with the rating "five", {no} a file
# that does not exist, {near} too many loose titles)
CASES: list[str] = [
    # data fetch
    "data fetch no-such-dataset",
    "data fetch",
    "data fetch ml-latest-small --source {tmp}/nowhere",
    # data info
    "data info {tmp}/nowhere",
    "data info {file}",
    "data info {empty}",
    "data info {data} --kcore 0",
    "data info {data} --kcore -3",
    "data info {data} --min-rating nan",
    "data info {data} --min-rating abc",
    "data info {data} --min-rating 99",
    "data info {ratings}",
    "data info {data} --on-bad-rows maybe",
    # data split
    "data split {data} --method temporal --test-fraction 5 --out {tmp}/s",
    "data split {data} --method random --test-fraction 0 --out {tmp}/s",
    "data split {data} --method random --test-fraction -0.1 --out {tmp}/s",
    "data split {data} --method random --test-fraction nan --out {tmp}/s",
    "data split {data} --method nope --out {tmp}/s",
    "data split {data} --out {file}",
    "data split {data} --out {file}/sub",
    "data split {data} --method fixed --out {tmp}/s",
    "data split {data} --method fixed --train-file {tmp}/no.csv --test-file {no} --out {tmp}/s",
    "data split {data}",
    "data split {data} --out {tmp}/s --seed x",
    "data split {ratings} --out {tmp}/s",
    # data synth
    "data synth --users 0 --items 10 --interactions 10 --out {tmp}/y",
    "data synth --users -5 --items 10 --interactions 10 --out {tmp}/y",
    "data synth --users 5 --items 10 --interactions 1000 --out {tmp}/y",
    "data synth --users 5 --items 10 --interactions 20 --format xml --out {tmp}/y",
    "data synth --users 5 --items 10 --interactions 20 --out {file}",
    "data synth --users 5 --items 1 --interactions 5 --out {tmp}/y",
    # train
    "train --data {data} --model nope --out {tmp}/b",
    "train --data {data} --param reg --out {tmp}/b",
    "train --data {data} --param =5 --out {tmp}/b",
    "train --data {data} --param reg=abc --out {tmp}/b",
    "train --data {data} --param nosuch=1 --out {tmp}/b",
    "train --data {data} --param pop.reg=1 --out {tmp}/b",
    "train --data {data} --param nope.reg=1 --out {tmp}/b",
    "train --data {data} --out {file}",
    "train --data {data} --out {file}/b",
    "train --data {data} --out {nonbundle}",
    "train --data {data} --holdout nope --out {tmp}/b",
    "train --data {data} --holdout fixed --out {tmp}/b",
    "train --data {data} --engine dask --out {tmp}/b",
    "train --data {data} --engine spark --model ease --out {tmp}/b",
    "train --data {tmp}/nowhere --out {tmp}/b",
    "train --data {data} --kcore 0 --out {tmp}/b",
    "train --data {data} --min-rating inf --out {tmp}/b",
    "train --data {ratings} --out {tmp}/b",
    "train --data {data} --on-bad-rows x --out {tmp}/b",
    # recommend
    "recommend --bundle {tmp}/nowhere --user 1",
    "recommend --bundle {file} --user 1",
    "recommend --bundle {badjson} --user 1",
    "recommend --bundle {corrupt} --user 1",
    "recommend --bundle {nonbundle} --user 1",
    "recommend --bundle {bundle}",
    "recommend --bundle {bundle} --user u0 --history x",
    "recommend --bundle {bundle} --user no-such-user",
    "recommend --bundle {bundle} --user {user} -k 0",
    "recommend --bundle {bundle} --user {user} -k 1000000000",
    "recommend --bundle {bundle} --user {user} -k abc",
    "recommend --bundle {bundle} --history 'Qwzxv Plorkt'",
    "recommend --bundle {bundle} --history {near}",
    "recommend --bundle {bundle} --history ';'",
    "recommend --bundle {bundle} --user {user} --with colour=red",
    "recommend --bundle {bundle} --user {user} --with genres",
    "recommend --bundle {bundle} --user {user} --years 2000-1990",
    "recommend --bundle {bundle} --user {user} --years abc",
    "recommend --bundle {bundle} --user {user} --reasons 0",
    "recommend --bundle {bundle} --user {user} --nosuchflag",
    # explain
    "explain --bundle {bundle} --user {user} --item 'Qwzxv Plorkt'",
    "explain --bundle {bundle} --user {user}",
    "explain --bundle {bundle} --user {user} --item {item} -k 0",
    "explain --bundle {bundle} --user {user} --item {item} -k 1000000000",
    "explain --bundle {bundle} --user {user} --item {seen}",
    "explain --bundle {badjson} --user {user} --item {item}",
    "explain --bundle {bundle} --item {item}",
    # explain-eval
    "explain-eval --data {data} --model nope",
    "explain-eval --data {data} --split fixed",
    "explain-eval --data {data} --split nope",
    "explain-eval --data {data} -k 1000000000",
    "explain-eval --data {data} --json {file}/x.json",
    "explain-eval --data {data} --evidence-size 9",
    "explain-eval --data {data} --param x",
    "explain-eval --data {data} -k 500",
    # evaluate
    "evaluate --data {data} --models ,",
    "evaluate --data {data} --models nope",
    "evaluate --data {data} --models ease,ease",
    "evaluate --data {data} --models pop --k 1000000000",
    "evaluate --data {data} --models pop --k 0",
    "evaluate --data {data} --models pop --k a",
    "evaluate --data {data} --models pop --k 500",
    "evaluate --data {data} --models pop --json {tmp}",
    "evaluate --data {data} --models pop --json {file}/x.json",
    "evaluate --data {data} --models pop --report {file}/r.html",
    "evaluate --data {data} --models pop --split random --test-fraction 5",
    "evaluate --data {data} --models pop --split nope",
    "evaluate --data {data} --models ease --param ease.nosuch=1",
    "evaluate --data {data} --models pop,ease --param reg=1",
    "evaluate --data {data} --models pop --split fixed",
    "evaluate --data {data} --models pop --split fixed --train-file {tmp}/no.csv --test-file {no}",
    "evaluate --data {data} --models pop --batch-size 0",
    "evaluate --data {data} --models pop --explain-users 0",
    "evaluate --data {ratings} --models pop",
    # tune
    "tune --data {data}",
    "tune --data {data} --grid reg",
    "tune --data {data} --grid reg=1 --metric auc@10",
    "tune --data {data} --grid reg=1 --metric ndcg",
    "tune --data {data} --grid reg=1 --metric ndcg@1000000000",
    "tune --data {data} --grid reg=1 --split fixed",
    "tune --data {data} --grid reg=1 --param reg=2",
    "tune --data {data} --grid reg=1 --json {file}/x.json",
    "tune --data {data} --grid nosuch=1",
    "tune --data {data} --grid reg=1 --test-fraction 1",
    # chat
    "chat --bundle {bundle} --db {file}/x.sqlite",
    "chat --bundle {bundle} --db mysql://host/db",
    "chat --bundle {bundle} --db sqlite:relative.sqlite",
    "chat --bundle {bundle} --db sqlite://host/x.sqlite",
    "chat --bundle {bundle} --db {tmp}/c.sqlite --session no-such-session",
    "chat --bundle {bundle} --db {tmp}/c.sqlite --user u --session s",
    "chat --bundle {tmp}/nowhere --db {tmp}/c.sqlite",
    "chat --bundle {bundle} --db {tmp}/c.sqlite --user no-such-user",
    "chat --bundle {bundle} --db {tmp}/c.sqlite --llm",
    "chat --bundle {bundle} --db {file}",
    # simulate
    "simulate --bundle {bundle} --json {tmp}/sim.json",
    "simulate --bundle {bundle} --json {tmp}/sim.json --user-mode nope",
    "simulate --bundle {bundle} --json {tmp}/sim.json --policies nope",
    "simulate --bundle {bundle} --json {tmp}/sim.json --policies ,",
    "simulate --bundle {bundle} --json {file}/sim.json",
    "simulate --bundle {bundle} --json {tmp}/sim.json --targets {tmp}/no.csv",
    "simulate --bundle {bundle} --json {tmp}/sim.json --episodes 0",
    "simulate --bundle {bundle} --json {tmp}/sim.json --episodes 1000000000",
    "simulate --bundle {bundle} --json {tmp}/sim.json --targets {file}",
    # interpret
    "interpret --bundle {bundle} --out {tmp}/x.txt",
    "interpret --bundle {bundle} --out {file}/r.html",
    "interpret --bundle {bundle} --out {tmp}/r.html --k 9 --latents 4",
    "interpret --bundle {bundle} --out {tmp}/r.html --latents 1000000000",
    "interpret --bundle {bundle} --out {tmp}/r.html",
    "interpret --bundle {badjson} --out {tmp}/r.html",
    # serve (every one refused before a socket is opened)
    "serve --bundle {tmp}/nowhere --db {tmp}/s.sqlite",
    "serve --bundle {bundle} --db {file}/x.sqlite",
    "serve --bundle {bundle} --db mysql://x/y",
    "serve --bundle {bundle} --port 70000",
    "serve --bundle {bundle} --db {tmp}/s.sqlite --api-key k:-5",
    "serve --bundle {bundle} --db :memory: --workers 2",
    "serve --bundle {corrupt} --db {tmp}/s.sqlite",
    # the command itself
    "nosuchcommand",
    "data nosuchcommand",
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The tiny dataset, its bundle and the broken files the table refers to."""
    root = tmp_path_factory.mktemp("careless")
    data = root / "data"
    assert exit_code(["data", "synth", "--users", "40", "--items", "30", "--interactions",
                      "500", "--out", str(data)]) == 0  # fmt: skip
    bundle = root / "bundle"
    assert exit_code(["train", "--data", str(data), "--model", "ease", "--out", str(bundle)]) == 0
    from whyrec.bundle import Bundle

    loaded = Bundle.load(bundle)
    user = str(loaded.train.user_ids[0])
    seen = loaded.catalog.item_ids[int(loaded.train.history(user)[0])]
    unseen = next(i for i in loaded.catalog.item_ids if i != seen)
    (root / "a-file.txt").write_text("not a folder\n")
    for name, text in (("badjson", "[1, 2]"), ("corrupt", "{not json")):
        (root / name).mkdir()
        (root / name / "bundle.json").write_text(text)
    (root / "nonbundle").mkdir()
    (root / "nonbundle" / "notes.txt").write_text("mine\n")
    (root / "empty").mkdir()
    ratings = root / "ratings"
    ratings.mkdir()
    (ratings / "interactions.csv").write_text("user_id,item_id,rating\n1,a,4\n2,a,five\n2,b,3\n")
    (ratings / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    scratch = root / "scratch"
    scratch.mkdir()
    return {
        "data": data,
        "bundle": bundle,
        "file": root / "a-file.txt",
        "tmp": scratch,
        "badjson": root / "badjson",
        "corrupt": root / "corrupt",
        "nonbundle": root / "nonbundle",
        "empty": root / "empty",
        "ratings": ratings,
        "user": user,
        "item": unseen,
        "seen": seen,
    }


def test_there_are_enough_cases():
    assert len(CASES) >= 100
    words = [case.split() for case in CASES]
    commands = {w[0] if w[0] != "data" else " ".join(w[:2]) for w in words}
    every = {"data fetch", "data info", "data split", "data synth", "train", "recommend"}
    every |= {"explain", "explain-eval", "evaluate", "tune", "chat", "simulate", "interpret"}
    assert every | {"serve"} <= commands


@pytest.mark.parametrize("case", CASES, ids=lambda case: case[:80])
def test_a_careless_input_is_one_clear_line(case, places, capsys, monkeypatch):
    fill = {**places, "near": NEAR_MISSES, "no": places["tmp"] / "no.csv"}
    argv = [part.format(**fill) for part in shlex.split(case)]
    monkeypatch.chdir(places["tmp"])  # a relative path a case names must not land in the repo
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, out, err = run(capsys, *argv)
    assert code == 2, f"exit {code}\n{out}\n{err}"
    assert "Traceback" not in out + err
    if "error:" in err and "Usage:" not in err:  # ours, not click's usage box
        assert len(err.strip().splitlines()) == 1, err


def test_non_utf8_bytes_on_stdin_are_one_line(places, capsys, monkeypatch, tmp_path):
    piped = io.TextIOWrapper(io.BytesIO(b"a funny film\n\xff\xfe bad\n"))
    monkeypatch.setattr(sys, "stdin", piped)
    db = str(tmp_path / "c.sqlite")
    code, out, err = run(capsys, "chat", "--bundle", str(places["bundle"]), "--db", db, "--json")
    assert code == 2 and "not UTF-8" in err and "Traceback" not in out + err
    assert len(out.strip().splitlines()) == 1  # the good first line was answered


def test_a_bug_is_one_line_a_log_and_its_own_exit_code(places, capsys, monkeypatch):
    """Not a user's mistake: exit 70, one line naming a log that holds the traceback."""
    from whyrec.bundle import Bundle

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Bundle, "load", broken)
    code, out, err = run(capsys, "recommend", "--bundle", str(places["bundle"]), "--user", "1")
    assert code == 70 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and "simulated bug" in err
    log = err.split("traceback in ")[1].split(";")[0]
    with open(log) as handle:
        text = handle.read()
    assert "Traceback" in text and "RuntimeError: simulated bug" in text
