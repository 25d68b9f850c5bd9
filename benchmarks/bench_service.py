"""Load on `whyrec serve` over loopback: /v1/recommend and chat turns at rising concurrency.

The server runs in its own process (uvicorn, one worker); this process is the client
(httpx, asyncio), closed loop: each of C clients sends its next request when the last one
is answered. Reports throughput, p50/p99 latency and errors per level, and the ratio of
the HTTP p50 to the same library call made in-process (the peer: `Engine.recommend`,
`Session.send`), so the cost of the service layer is visible. Goals (issue 7): recommend
p99 < 50 ms at 32 clients with zero errors; chat turns p99 < 150 ms. Client and server
share the machine's cores, as they would on one 2-core host.

    python benchmarks/bench_service.py [--bundle DIR] [--levels 1,8,32,64] [--seconds 5]

The Python client costs CPU that the server then lacks on a small machine; the goals are
measured with a load generator written in C and several server processes by
`benchmarks/bench_load.py` (Debian's `wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHAT_SCRIPT = [
    "a funny animated film from the 90s",
    "something like Toy Story",
    "why the first one?",
    "none of these",
    "I love The Matrix",
    "start over",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_bundle(path: Path | None, workdir: Path) -> Path:
    if path is not None:
        return path
    bundle = workdir / "ease-ml-latest-small"
    subprocess.run(
        [sys.executable, "-m", "whyrec.cli", "train", "--data", "ml-latest-small",
         "--model", "ease", "--out", str(bundle)],
        check=True, env=_env(workdir),
    )  # fmt: skip
    return bundle


def _env(workdir: Path) -> dict:
    src = str(ROOT / "src")
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def start_server(bundle: Path, workdir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """`whyrec serve` on a free port with `flags`, once it answers /healthz."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "whyrec.cli", "serve", "--bundle", str(bundle),
         "--db", str(workdir / "bench.sqlite"), "--port", str(port), "--rate-limit", "0",
         "--log-level", "warning", *flags],
        env=_env(workdir), stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    sys.exit("server did not start")


async def run_level(url: str, clients: int, seconds: float, make_request) -> dict:
    """C closed-loop clients for `seconds`; latencies of answered requests and errors."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        states = [await make_request.setup(http, n) for n in range(clients)]
        stop_at = time.perf_counter() + seconds

        async def client(state) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    response = await make_request(http, state)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(client(s) for s in states))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "throughput": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "errors": errors,
    }


class Recommend:
    def __init__(self, user_ids: list[str]) -> None:
        self.user_ids = user_ids

    async def setup(self, http, n):
        return random.Random(n)

    async def __call__(self, http, rng):
        return await http.post(
            "/v1/recommend", json={"user_id": rng.choice(self.user_ids), "k": 10}
        )


class ChatTurn:
    async def setup(self, http, n):
        created = (await http.post("/v1/sessions", json={})).json()
        return {"id": created["session_id"], "auth": f"Bearer {created['token']}", "n": n}

    async def __call__(self, http, state):
        text = CHAT_SCRIPT[state["n"] % len(CHAT_SCRIPT)]
        state["n"] += 1
        return await http.post(
            f"/v1/sessions/{state['id']}/messages",
            json={"text": text},
            headers={"Authorization": state["auth"]},
        )


def library_peer(bundle: Path, user_ids: list[str], repeats: int = 200) -> dict:
    """The same work without HTTP: median ms of Engine.recommend and Session.send."""
    from whyrec.bundle import Bundle
    from whyrec.conversation import Conversation
    from whyrec.engine import Engine
    from whyrec.store import open_store

    engine = Engine(Bundle.load(bundle))
    rng = random.Random(0)
    times = []
    for _ in range(repeats):
        user = rng.choice(user_ids)
        started = time.perf_counter()
        engine.recommend(engine.user_history(user), k=10, user_id=user)
        times.append(time.perf_counter() - started)
    conversation = Conversation(engine, store=open_store(":memory:"))
    session = conversation.start()
    for text in CHAT_SCRIPT:  # warm-up, as the server's
        session.send(text)
    turns = []
    for n in range(60):
        started = time.perf_counter()
        session.send(CHAT_SCRIPT[n % len(CHAT_SCRIPT)])
        turns.append(time.perf_counter() - started)
    return {
        "recommend": statistics.median(times[20:]) * 1000,
        "chat turn": statistics.median(turns) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--levels", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    parser.add_argument(
        "--cache-sizes",
        default="0,4096",
        help="Recommend is measured once per server answer-cache size (0: every request "
        "scored and explained); chat turns on the last one.",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="whyrec-bench-service-"))
    bundle = ensure_bundle(args.bundle, workdir)
    user_ids = json.loads((bundle / "bundle.json").read_text())["user_ids"]
    peer = library_peer(bundle, user_ids)
    cache_sizes = [int(x) for x in args.cache_sizes.split(",")]
    rows = []
    for cache_size in cache_sizes:
        server, url = start_server(bundle, workdir, "--cache-size", str(cache_size))
        endpoints = [(f"recommend cache={cache_size}", "recommend", Recommend(user_ids))]
        if cache_size == cache_sizes[-1]:
            endpoints.append(("chat turn", "chat turn", ChatTurn()))
        try:
            for name, peer_name, request in endpoints:
                asyncio.run(run_level(url, 4, 1.0, request))  # warm the connections
                for clients in levels:
                    row = asyncio.run(run_level(url, clients, args.seconds, request))
                    row["endpoint"] = name
                    row["p50_vs_library"] = row["p50_ms"] / peer[peer_name]
                    rows.append(row)
                    print(
                        f"{name:20s} C={clients:3d}  {row['throughput']:7.1f} req/s  "
                        f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
                        f"errors {row['errors']}  (p50 = {row['p50_vs_library']:.1f}x library "
                        f"{peer[peer_name]:.1f} ms)",
                        flush=True,
                    )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    goals = [(f"recommend cache={size}", 32, 50.0) for size in cache_sizes]
    goals.append(("chat turn", 32, 150.0))
    for name, clients, limit in goals:
        match = [r for r in rows if r["endpoint"] == name and r["clients"] == clients]
        if match:
            r = match[0]
            verdict = "met" if r["p99_ms"] < limit and r["errors"] == 0 else "NOT met"
            print(f"goal {name} p99 < {limit:.0f} ms at {clients} clients, 0 errors: {verdict} "
                  f"(p99 {r['p99_ms']:.1f} ms, errors {r['errors']})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"library_ms": peer, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
