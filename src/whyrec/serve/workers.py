"""N server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own `--workers` shares one socket among its processes: when a burst of
connections reaches idle workers, the kernel hands most of them to one process (measured
with wrk: 32 connections all on one of two workers, so two processes served no more than
one). With one SO_REUSEPORT socket per worker the kernel spreads connections over the
workers by a hash of their addresses. Each worker opens its socket itself and listens only
once its app is warm, so a worker that died or is still starting takes no connections
(a supervisor-held socket would queue them for the replacement's whole start-up). The
supervisor restarts a worker that dies and stops everything when one cannot start (a
broken bundle would fail the same way every time).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading

from whyrec.errors import WhyrecError

log = logging.getLogger("whyrec.serve")

STARTUP_FAILURE = 3
"""A worker's exit code when its app could not start (uvicorn uses the same)."""

APP = "whyrec.serve.app:worker_app"


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT, so that every worker can bind the same port.

    It is bound, not listening: the kernel hands connections only to listening sockets,
    and uvicorn starts listening once the worker's app is loaded and warm. A worker that is
    still starting (or dead) therefore never holds connections in a queue nobody accepts
    from; they go to the workers that serve."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WhyrecError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def run_worker(host: str, port: int, log_level: str) -> None:
    """A worker process: uvicorn serving the app (built from the environment) on a socket
    of its own, which listens only after the app has loaded."""
    import uvicorn

    config = uvicorn.Config(APP, factory=True, log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[reuseport_socket(host, port)])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Starts `n` workers, restarts those that die, stops them all on SIGINT/SIGTERM."""

    def __init__(self, n: int, host: str, port: int, log_level: str) -> None:
        # holds the port (port 0: the one the kernel chose) for the workers to join;
        # bound, never listening, so it takes no connections itself
        self._reserved = reuseport_socket(host, port)
        self.host, self.port = host, self._reserved.getsockname()[1]
        self.n = n
        self.log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._stop = threading.Event()

    def _start(self) -> multiprocessing.process.BaseProcess:
        worker = self._context.Process(
            target=run_worker, args=(self.host, self.port, self.log_level), daemon=False
        )
        worker.start()
        return worker

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self._workers = [self._start() for _ in range(self.n)]
        try:
            while not self._stop.wait(0.5):
                self._replace_dead()
        finally:
            self._stop_all()

    def _replace_dead(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.is_alive():
                continue
            if worker.exitcode == STARTUP_FAILURE:
                raise WhyrecError("a worker could not start its app; see the log above")
            log.warning("worker %s died (exit code %s); starting another", worker.pid,
                        worker.exitcode)  # fmt: skip
            self._workers[index] = self._start()

    def _stop_all(self) -> None:
        for worker in self._workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for worker in self._workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
        self._reserved.close()
