"""The README's commands, run as written, on small data: documented commands cannot rot.

Every line of every ```bash block runs through bash in a scratch folder, with the
project's `whyrec` first on PATH and `WHYREC_DATA_DIR` pointing at a slice of
ml-latest-small (its first users, the movies they rated), so `ml-latest-small` means
small data while each command stays the one a reader types. A few arguments sized for a
real run are scaled down (`SMALLER`); commands that serve forever are started, checked
for health and stopped; the LLM ones talk to the scripted OpenAI-compatible server of
tests/llm_server.py. Not run here, and why, is listed in `NOT_HERE`.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from postgres_server import ENV_URL, free_port, fresh_database

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SLICE_USERS = 15
"""ml-latest-small's users 1..15: 1,569 ratings of 1,093 movies."""

SMALLER = [
    # (pattern, replacement): sizes for a real run, scaled to the slice
    (r"--episodes 1000", "--episodes 3 --max-turns 4"),
    (
        r"--users 200000 --items 10000 --interactions 10000000",
        "--users 300 --items 80 --interactions 6000",
    ),
    (r"--latents 1024 --k 8", "--k 4"),
    (r"whyrec interpret ", "whyrec interpret --epochs 2 --latents 32 "),
    (r"--ablate 137 --boost 42", "--ablate 3 --boost 5"),
    (r"--model sasrec ", "--model sasrec --param sasrec.epochs=2 "),
    (
        r"--models pop,itemknn,ease,ials,bpr",
        "--models pop,itemknn,ease,ials,bpr --param ials.iterations=2 --param bpr.iterations=5",
    ),
    (r"--bundle B\b", "--bundle bundles/ease-ut --episodes 2 --max-turns 3"),
    (r"bundles/ml-latest-small-ease", "bundles/ease"),
]
NOT_HERE = {
    "make run": "the set-up command; it trains on the whole dataset (CI runs `make test`)",
    "make test": "this very suite",
    "python benchmarks/": "benchmarks run for minutes on purpose",
    "--engine spark": "Spark takes a minute to start; tests/test_spark.py trains through it",
}


def readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(line.strip())
    return commands


def test_the_readme_has_commands_to_run():
    commands = readme_commands()
    assert len(commands) >= 30 and any("whyrec serve" in c for c in commands)


@pytest.fixture(scope="module")
def sliced(tmp_path_factory, ml_dir):
    """A WHYREC_DATA_DIR whose ml-latest-small holds the first SLICE_USERS users."""
    root = tmp_path_factory.mktemp("readme-data")
    target = root / "ml-latest-small"
    target.mkdir()
    ratings = pd.read_csv(ml_dir / "ratings.csv")
    ratings = ratings[ratings["userId"] <= SLICE_USERS]
    ratings.to_csv(target / "ratings.csv", index=False)
    for name in ("movies.csv", "tags.csv"):
        frame = pd.read_csv(ml_dir / name)
        frame[frame["movieId"].isin(set(ratings["movieId"]))].to_csv(target / name, index=False)
    return root


class Runner:
    """Runs README lines in one scratch folder, keeping `export`s and serving processes."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.servers: list[subprocess.Popen] = []
        self.port: int | None = None

    def adapt(self, command: str) -> str:
        for pattern, replacement in SMALLER:
            command = re.sub(pattern, replacement, command)
        command = command.replace("curl -s ", "curl -sf ")  # an HTTP error fails the line
        if self.port is not None:
            command = command.replace("localhost:8000", f"127.0.0.1:{self.port}")
        if "postgresql://user@host/whyrec" in command:
            server = os.environ.get(ENV_URL)  # CI's PostgreSQL: a fresh database on it
            target = fresh_database(server) if server else str(self.folder / "keyed.sqlite")
            command = command.replace("postgresql://user@host/whyrec", target)
        return command

    def run(self, command: str) -> None:
        if command.startswith("source "):
            return  # the venv's bin is already first on PATH
        if command.startswith("export "):
            for pair in shlex.split(command, comments=True)[1:]:
                name, _, value = pair.partition("=")
                self.env[name] = self.env.get(f"README_{name}", value)
            return
        command = self.adapt(command)
        if "whyrec serve" in command:
            self.serve(command)
            return
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"

    def serve(self, command: str) -> None:
        """Start a serving command on a free port, wait until it is healthy, keep it."""
        self.port = free_port()
        command = f"{command.split('#')[0].strip()} --port {self.port}"
        log = (self.folder / f"serve-{self.port}.log").open("w")
        server = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.folder,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # stopped as a group: bash and the server under it
        )
        self.servers.append(server)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, f"{command} exited: {Path(log.name).read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise AssertionError(f"{command} never became healthy")

    def stop(self) -> None:
        for server in self.servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def test_every_readme_command_runs_on_small_data(sliced, tmp_path, llm_server):
    folder = tmp_path / "work"
    folder.mkdir()
    own = folder / "path" / "to" / "folder"  # "Your own data": a canonical folder
    assert subprocess.run(
        [sys.executable, "-m", "whyrec.cli", "data", "synth", "--users", "200", "--items", "40",
         "--interactions", "4000", "--out", str(own)], capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "WHYREC_DATA_DIR": str(sliced),
        "WHYREC_SESSION_DB": str(folder / "sessions.sqlite"),
        "README_WHYREC_LLM_BASE_URL": llm_server.base_url,
    }
    runner = Runner(folder, env)
    ran, skipped = 0, []
    started = time.monotonic()
    try:
        for command in readme_commands():
            reason = next((why for key, why in NOT_HERE.items() if key in command), None)
            if reason:
                skipped.append(command)
                continue
            runner.run(command)
            ran += 1
    finally:
        runner.stop()
    print(f"\nREADME: {ran} commands ran in {time.monotonic() - started:.0f}s; "
          f"not here: {skipped}")  # fmt: skip
    assert ran >= 25
