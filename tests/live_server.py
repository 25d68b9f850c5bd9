"""`whyrec serve` as a real process on a free loopback port, for browser and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from postgres_server import free_port

SRC = Path(__file__).resolve().parents[1] / "src"
SHARED_CACHE = Path(tempfile.gettempdir()) / f"whyrec-live-server-cache-{os.getuid()}"


class LiveServer:
    def __init__(self, bundle: Path, db: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            # item text vectors are encoded by the first server and reused by the others
            "WHYREC_CACHE_DIR": str(SHARED_CACHE),
        }
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "whyrec.cli",
                "serve",
                "--bundle",
                str(bundle),
                "--db",
                db,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, timeout: float = 240.0) -> LiveServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown handlers, no flushing."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log_file.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()

    def __enter__(self) -> LiveServer:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
