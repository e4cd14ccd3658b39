"""Real server processes for tests (Celery workers, daphne), on the test database.

Each writes its output to a log file under var/, is ready when its own check
says so, and stops with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# Containers made by this test session carry this instance label, so cleanup
# and reconciliation never touch anything else on the engine.
TEST_INSTANCE = os.environ.get("DEVBENCH_INSTANCE") or f"test-{uuid.uuid4().hex[:8]}"


def service_env(db_name: str) -> dict[str, str]:
    """The environment of a server process that serves the test database."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db_name}"
    )
    env["DEVBENCH_INSTANCE"] = TEST_INSTANCE
    env.setdefault("DEVBENCH_ENGINE_DIRECT", "true")
    return env


class ManagedProcess:
    """A subprocess whose readiness a subclass defines in :meth:`is_ready`."""

    what = "process"
    stop_grace_s = 20.0

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], log_name: str) -> None:
        self.argv = list(argv)
        self.env = env
        self.log_path = ROOT / "var" / f"{log_name}-{TEST_INSTANCE}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc: subprocess.Popen[bytes]
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def is_ready(self) -> bool:
        raise NotImplementedError

    def log_tail(self, chars: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited: {self.log_tail(3000)}")
            if self.is_ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.what} not ready: {self.log_tail(3000)}")

    def _stop_process(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stop the process and start a new one with the same command line."""
        self._stop_process()
        self._start()

    def stop(self) -> None:
        self._stop_process()
        self._log.close()
