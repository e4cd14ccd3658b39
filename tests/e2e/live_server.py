"""A real daphne server process on 127.0.0.1, serving the test database."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, TEST_INSTANCE, _worker_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaphneServer:
    def __init__(self, db_name: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path: Path = ROOT / "var" / f"daphne-{self.port}-{TEST_INSTANCE}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._env = {**_worker_env(db_name), **(extra_env or {})}
        self._log = self.log_path.open("wb")
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "devbench_site.asgi:application",
            ],
            cwd=ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def restart(self) -> None:
        """Stop the process and start a new one on the same port (clients must reconnect)."""
        self._stop_process()
        self._start()

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne not ready: {self.log_path.read_text()[-3000:]}")

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}{path}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    def stop(self) -> None:
        self._stop_process()
        self._log.close()

    def _stop_process(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
