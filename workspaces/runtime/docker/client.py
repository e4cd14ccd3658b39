from __future__ import annotations

import threading

import docker

from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.quick import forget_quick_engines

_lock = threading.Lock()
_clients: dict[tuple[str, int], docker.APIClient] = {}


def api_client(base_url: str, timeout_s: int) -> docker.APIClient:
    """One low-level client per engine URL per process (its pool is thread-safe)."""
    key = (base_url, timeout_s)
    with _lock:
        client = _clients.get(key)
        if client is None:
            with translated(engine_url=base_url):
                client = docker.APIClient(
                    base_url=base_url, timeout=timeout_s, max_pool_size=64, version="auto"
                )
            if client.base_url.startswith("http+docker://"):
                # A local socket has no proxy or .netrc to apply, yet requests reads
                # both from the environment on every call (~1.5 ms each under load).
                client.trust_env = False
            _clients[key] = client
        return client


def forget_clients() -> None:
    """Drop cached clients (after fork, or when an engine restarts)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
    forget_quick_engines()
