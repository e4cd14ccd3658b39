"""Real server processes for tests (Celery workers, daphne, scripts/serve), on the test database.

Each writes its output to a log file under var/, is ready when its own check
says so, and stops with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# Containers made by this test session carry this instance label, so cleanup
# and reconciliation never touch anything else on the engine.
TEST_INSTANCE = os.environ.get("DEVBENCH_INSTANCE") or f"test-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], Any], *, timeout_s: float = 60, what: str = "condition") -> Any:
    """Poll ``check`` (backing off to 0.5 s) until it returns something true; return that."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


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
        # A process group of its own: what it starts (a server's workers) is stopped with it.
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
        # Whatever it left behind (a worker still stopping when its master was killed)
        # would hold connections to the test database past the session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def restart(self) -> None:
        """Stop the process and start a new one with the same command line."""
        self._stop_process()
        self._start()

    def stop(self) -> None:
        self._stop_process()
        self._log.close()


class DaphneServer(ManagedProcess):
    """A real web process (HTTP, MCP, websockets) on a port fixed at start, so a restart
    keeps the address clients use. Serves the test database ``db_name`` unless given a
    whole ``env`` (e.g. the embedded mode's)."""

    what = "daphne"
    stop_grace_s = 10.0

    def __init__(
        self,
        db_name: str | None = None,
        *,
        env: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        name: str = "web",
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.base_url = f"http://{self.host}"
        self.access_log = ROOT / "var" / f"daphne-{name}-{self.port}-{TEST_INSTANCE}.access.log"
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        self.access_log.write_text("")
        if env is None:
            assert db_name is not None, "a test database or a whole environment"
            env = service_env(db_name)
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                "--access-log", str(self.access_log), "devbench_site.asgi:application"]  # fmt: skip
        super().__init__(
            argv, env={**env, **(extra_env or {})}, log_name=f"daphne-{name}-{self.port}"
        )

    def is_ready(self) -> bool:
        return port_open(self.port)

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}{path}"

    def mcp_url(self, slug: str) -> str:
        return f"{self.base_url}/mcp/{slug}/"

    def mcp_requests_served(self) -> int:
        return sum(1 for line in self.access_log.read_text().splitlines() if '"POST /mcp/' in line)


class ServeProcess(ManagedProcess):
    """``scripts/serve`` (gunicorn + uvicorn workers); ready once every worker has
    started its server. Its access log is a file of its own."""

    what = "scripts/serve"
    booted = re.compile(r"Booting worker with pid: (\d+)")
    started = re.compile(r"Started server process \[(\d+)\]")

    def __init__(
        self, db_name: str, workers: int = 2, *, extra_env: dict[str, str] | None = None
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.access_log = ROOT / "var" / f"serve-{self.port}-{TEST_INSTANCE}.access.log"
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        self.access_log.write_text("")
        env = {
            **service_env(db_name),
            "DEVBENCH_HOST": "127.0.0.1",
            "DEVBENCH_PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "DEVBENCH_ACCESS_LOG": str(self.access_log),
            **(extra_env or {}),
        }
        super().__init__([str(ROOT / "scripts" / "serve")], env=env, log_name=f"serve-{self.port}")

    def is_ready(self) -> bool:
        return len(set(self.started.findall(self.log_tail(100_000)))) >= self.workers

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in self.booted.findall(self.log_tail(100_000))}
