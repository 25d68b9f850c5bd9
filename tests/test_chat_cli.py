"""`whyrec chat` scripted through standard input, as a separate process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def bundle(served_bundle):
    """The service tests' EASE bundle (conftest), trained once per test run."""
    return served_bundle


def _chat(bundle, tmp_path, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "whyrec.cli",
            "chat",
            "--bundle",
            str(bundle),
            "--db",
            str(tmp_path / "s.sqlite"),
            *extra,
        ],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_json_turns_one_per_line(bundle, tmp_path):
    done = _chat(
        bundle,
        tmp_path,
        ["a funny animated film like Toy Story", "why the first one?", "none of these"],
        "--json",
    )
    assert done.returncode == 0, done.stderr
    turns = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(turns) == 3
    for turn in turns:
        assert set(turn) == {"session_id", "reply", "items", "question", "state"}
    assert turns[0]["items"] and {"item_id", "title", "explanation"} <= set(turns[0]["items"][0])
    assert turns[0]["items"][0]["title"] in turns[1]["reply"]
    assert set(turns[2]["state"]["rejected"]) >= set(turns[0]["state"]["shown"])
    # a piped conversation can be resumed from its own output
    session_id = turns[0]["session_id"]
    assert {t["session_id"] for t in turns} == {session_id}
    resumed = _chat(bundle, tmp_path, ["why the second one?"], "--session", session_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["session_id"] == session_id and again["state"]["turn"] == 4


def test_plain_replies_and_resume(bundle, tmp_path):
    done = _chat(bundle, tmp_path, ["I love The Matrix"], "--user", "1")
    assert done.returncode == 0 and "Matrix" in done.stdout
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("
            "'select id from sessions').fetchone()[0])",
            str(tmp_path / "s.sqlite"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    session_id = listed.stdout.strip()
    resumed = _chat(bundle, tmp_path, ["why the first one?"], "--session", session_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"]["liked"]
    missing = _chat(bundle, tmp_path, ["hi"], "--session", "nope")
    assert missing.returncode == 2 and "no session" in missing.stderr
    assert "Traceback" not in missing.stderr
