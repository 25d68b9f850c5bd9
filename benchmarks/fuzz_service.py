"""Fuzz a live `whyrec serve` with the schemathesis CLI, from its own OpenAPI document.

Valid (positive) and invalid (negative) requests, the coverage phase's boundary values
and stateful sequences that follow the document's links, then figures: requests sent,
5xx answers, and schema-valid requests the server refused (schemathesis'
positive_data_acceptance check: anything but 2xx, 401, 403, 404, 409 or 429).

schemathesis runs from a throw-away environment, not the project's:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install schemathesis
    python benchmarks/fuzz_service.py --bundle bundles/ease --st /tmp/st/bin/st \\
        --examples 400 --json benchmarks/results/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

CHECKS = "not_a_server_error,positive_data_acceptance"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(bundle: Path, db: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "whyrec.cli", "serve", "--bundle", str(bundle)]
    command += ["--db", str(db), "--port", str(port), "--rate-limit", "0", "--log-level", "error"]
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
        if server.poll() is not None:
            break
    server.kill()
    raise SystemExit(f"the server did not start; see {log}")


def statuses_from_har(path: Path) -> Counter[int]:
    entries = json.loads(path.read_text())["log"]["entries"]
    return Counter(entry["response"]["status"] for entry in entries)


def failures_from_ndjson(path: Path) -> Counter[str]:
    """Failed checks by name, one per distinct failure schemathesis reports."""
    found: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        text = json.dumps(event)
        for check in CHECKS.split(","):
            if f'"{check}"' in text and '"status": "failure"' in text:
                found[check] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--st", default="st", help="The schemathesis CLI (its own venv).")
    parser.add_argument("--examples", type=int, default=400, help="Per operation and phase.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Write the figures here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="whyrec-fuzz-") as scratch:
        folder = Path(scratch)
        port = free_port()
        server = start_server(args.bundle, folder / "fuzz.sqlite", port, folder / "server.log")
        started = time.monotonic()
        try:
            run = subprocess.run(
                [
                    args.st,
                    "run",
                    f"http://127.0.0.1:{port}/openapi.json",
                    "--phases",
                    "examples,coverage,fuzzing,stateful",
                    "--mode",
                    "all",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    str(args.examples),
                    "--seed",
                    str(args.seed),
                    "--workers",
                    "2",
                    "--continue-on-failure",
                    "--suppress-health-check",
                    "all",
                    "--generation-database",
                    "none",
                    "--report",
                    "har,ndjson",
                    "--report-har-path",
                    str(folder / "run.har"),
                    "--report-ndjson-path",
                    str(folder / "run.ndjson"),
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        seconds = time.monotonic() - started
        if not (folder / "run.har").exists():
            raise SystemExit(f"schemathesis failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        statuses = statuses_from_har(folder / "run.har")
        failures = failures_from_ndjson(folder / "run.ndjson")
        crashed = "Traceback" in (folder / "server.log").read_text()
    figures = {
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "valid_refused_failures": failures.get("positive_data_acceptance", 0),
        "server_error_failures": failures.get("not_a_server_error", 0),
        "traceback_in_server_log": crashed,
        "seconds": round(seconds, 1),
        "schemathesis_exit": run.returncode,
        "examples_per_operation": args.examples,
    }
    print(run.stdout)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
