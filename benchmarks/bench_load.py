"""The service under load, as issue 7 states the goals: `wrk` (a C client) on loopback.

For each number of server processes (`whyrec serve --workers N`) it measures, at rising
concurrency, closed loop, one full explained top-10 per request:
  * /v1/recommend, cold: `--cache-size 0`, every request scored and explained;
  * /v1/recommend, warm: the answer cache primed with every user first;
  * chat turns: POST /v1/sessions/{id}/messages over sessions made beforehand, cycling
    through a scripted conversation (benchmarks/wrk_chat.lua), each durable before the
    answer (SQLite WAL, synchronous=FULL).
It reports throughput, p50/p99 latency, errors (non-2xx and socket errors), the server's
CPU time per request (all its processes, from /proc: steadier than wall time on a shared
machine), and each throughput as a ratio to the one-process server at the same level (the
peer run in this script). Goals: recommend p99 < 50 ms at 32 clients with zero errors;
chat turns p99 < 150 ms. Client and server share the machine's cores.

    python benchmarks/bench_load.py [--bundle DIR] [--workers 1,2] [--levels 1,8,32,64]
                                    [--seconds 8] [--sessions 512] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench_service import ensure_bundle, start_server

HERE = Path(__file__).resolve().parent
GOALS = {"recommend cold": 50.0, "recommend warm": 50.0, "chat turn": 150.0}
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pending.extend(int(c) for c in children)
    return total


def wrk(url: str, script: str, clients: int, seconds: float, env: dict) -> dict:
    """One wrk run; its throughput, latency percentiles and errors."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(HERE / script), url],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip

    def latency(percent: int) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * UNITS[unit]

    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "throughput": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "errors": int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
        + (sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0),
    }


def make_sessions(url: str, n: int, path: Path) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        lines = []
        for _ in range(n):
            created = http.post("/v1/sessions", json={}).json()
            lines.append(f"{created['session_id']} {created['token']}")
    path.write_text("\n".join(lines) + "\n")


def cache_misses(url: str) -> float:
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(r'whyrec_recommend_cache_total\{outcome="miss"\} ([\d.e+]+)', metrics)
    return float(found.group(1)) if found else 0.0


def prime_cache(url: str, env: dict) -> None:
    """Load until a burst adds no cache miss: every worker then holds every user's answer
    (each worker has its own cache, and wrk's connections land on any of them)."""
    for _ in range(20):
        before = cache_misses(url)
        wrk(url, "wrk_recommend.lua", 32, 3, env)
        if cache_misses(url) == before:
            return
    print("warning: the cache still missed after 20 bursts", file=sys.stderr)


def measure(name, server, url, script, levels, seconds, env) -> list[dict]:
    wrk(url, script, 8, 2, env)  # warm connections and the code paths
    rows = []
    for clients in levels:
        before = cpu_seconds(server.pid)
        row = wrk(url, script, clients, seconds, env)
        row["cpu_ms_per_request"] = (cpu_seconds(server.pid) - before) * 1000 / row["requests"]
        row.update(endpoint=name, clients=clients)
        rows.append(row)
    return rows


def run_server(bundle, workdir, workers, cache_size, args, env) -> list[dict]:
    server, url = start_server(
        bundle, workdir, "--workers", str(workers), "--cache-size", str(cache_size)
    )
    rows = []
    try:
        if cache_size == 0:
            rows += measure("recommend cold", server, url, "wrk_recommend.lua", args.levels,
                            args.seconds, env)  # fmt: skip
        else:
            prime_cache(url, env)
            rows += measure("recommend warm", server, url, "wrk_recommend.lua", args.levels,
                            args.seconds, env)  # fmt: skip
            sessions = workdir / f"sessions-{workers}.txt"
            make_sessions(url, args.sessions, sessions)
            chat_env = {**env, "WHYREC_WRK_SESSIONS": str(sessions)}
            rows += measure("chat turn", server, url, "wrk_chat.lua", args.levels, args.seconds,
                            chat_env)  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    for row in rows:
        row["workers"] = workers
    return rows


def report(rows: list[dict]) -> None:
    peers = {(r["endpoint"], r["clients"]): r for r in rows if r["workers"] == 1}
    header = ("endpoint", "workers", "C", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req",
              "req/s vs 1 worker")  # fmt: skip
    print(f"{header[0]:15s}", *(f"{h:>{max(6, len(h))}s}" for h in header[1:]))
    for r in rows:
        peer = peers.get((r["endpoint"], r["clients"]))
        ratio = f"{r['throughput'] / peer['throughput']:.2f}x" if peer else "-"
        print(f"{r['endpoint']:15s} {r['workers']:7d} {r['clients']:6d} {r['throughput']:6.1f} "
              f"{r['p50_ms']:6.1f} {r['p99_ms']:6.1f} {r['errors']:6d} "
              f"{r['cpu_ms_per_request']:10.2f} {ratio:>17s}")  # fmt: skip
    for r in rows:
        limit = GOALS[r["endpoint"]]
        if r["clients"] == 32:
            met = r["p99_ms"] < limit and r["errors"] == 0
            print(f"goal {r['endpoint']} p99 < {limit:.0f} ms at 32 clients, 0 errors, "
                  f"{r['workers']} worker(s): {'met' if met else 'NOT met'} "
                  f"(p99 {r['p99_ms']:.1f} ms, errors {r['errors']})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--workers", default="1,2", help="Server process counts to compare.")
    parser.add_argument("--levels", default="1,8,32,64", help="Concurrent clients.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Per level.")
    parser.add_argument("--sessions", type=int, default=512, help="Chat sessions made first.")
    parser.add_argument("--users", type=int, default=610, help="User ids 1..N (ml-latest-small).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (Debian: apt-get install wrk)")
    args.levels = [int(x) for x in args.levels.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="whyrec-bench-load-"))
    bundle = ensure_bundle(args.bundle, workdir)
    env = {**os.environ, "WHYREC_WRK_USERS": str(args.users)}
    rows = []
    for workers in [int(x) for x in args.workers.split(",")]:
        for cache_size in (0, 4096):
            rows += run_server(bundle, workdir, workers, cache_size, args, env)
            print(f"measured {workers} worker(s), cache {cache_size}", file=sys.stderr)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
