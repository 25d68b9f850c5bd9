"""N server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own `--workers` shares one socket among its processes: when a burst of
connections reaches idle workers, the kernel hands most of them to one process (measured
with wrk: 32 connections all on one of two workers, so two processes served no more than
one). With one SO_REUSEPORT socket per worker the kernel spreads connections over the
workers by a hash of their addresses. The supervisor restarts a worker that dies and stops
everything when one cannot start (a broken bundle would fail the same way every time).
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


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT, so that every worker can bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WhyrecError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def run_worker(sock: socket.socket, log_level: str) -> None:
    """A worker process: uvicorn serving the app (built from the environment) on `sock`."""
    import uvicorn

    config = uvicorn.Config(APP, factory=True, log_level=log_level, access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Starts `n` workers, restarts those that die, stops them all on SIGINT/SIGTERM."""

    def __init__(self, n: int, host: str, port: int, log_level: str) -> None:
        first = listening_socket(host, port)
        port = first.getsockname()[1]  # port 0: the others join the one the kernel chose
        self.sockets = [first] + [listening_socket(host, port) for _ in range(n - 1)]
        self.port = port
        self.log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._stop = threading.Event()

    def _start(self, index: int) -> multiprocessing.process.BaseProcess:
        worker = self._context.Process(
            target=run_worker, args=(self.sockets[index], self.log_level), daemon=False
        )
        worker.start()
        return worker

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self._workers = [self._start(i) for i in range(len(self.sockets))]
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
            self._workers[index] = self._start(index)

    def _stop_all(self) -> None:
        for worker in self._workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for worker in self._workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for sock in self.sockets:
            sock.close()
