"""A real daphne server process on 127.0.0.1, serving the test database."""

from __future__ import annotations

import socket
import sys

from tests.processes import ManagedProcess, service_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class DaphneServer(ManagedProcess):
    """Daphne on a fixed free port, so a restart keeps the address clients use."""

    what = "daphne"
    stop_grace_s = 10.0

    def __init__(self, db_name: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                "devbench_site.asgi:application"]  # fmt: skip
        env = {**service_env(db_name), **(extra_env or {})}
        super().__init__(argv, env=env, log_name=f"daphne-{self.port}")

    def is_ready(self) -> bool:
        return port_open(self.port)

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}{path}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"
