"""The production web server: gunicorn managing uvicorn worker processes.

``scripts/serve`` starts ``gunicorn -c python:devbench_site.server`` with the
app ``devbench_site.asgi:application``; each worker process is a uvicorn
server (HTTP, websockets and MCP on one event loop). Why this pair:
docs/adr/production-server.md.

Everything comes from the environment (documented in the README):

* ``DEVBENCH_HOST`` / ``DEVBENCH_PORT``: where to listen (``127.0.0.1:8000``).
* ``WEB_CONCURRENCY``: worker processes; default one per usable core, at least 2.
* ``DEVBENCH_WEB_TIMEOUT``: seconds a worker's event loop may stay blocked
  (or a booting worker may take) before gunicorn replaces the worker (60).
* ``DEVBENCH_ACCESS_LOG``: ``-`` (stdout, the default), a file, or empty for none.
* ``DEVBENCH_WS_DEFLATE``: ``true`` to compress websocket messages
  (permessage-deflate) for clients that offer it; off by default (below).
* ``GUNICORN_CMD_ARGS``: any other gunicorn option.

``scripts/serve`` also points ``PROMETHEUS_MULTIPROC_DIR`` at an emptied directory
of this service, so every worker answers ``/metrics`` with the sum over all of them;
:func:`child_exit` drops a dead worker's live gauges (docs/operations.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from core.metrics import mark_process_dead


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0)) or 1


def default_workers() -> int:
    # At least two, so one busy or restarting worker never leaves nobody to answer.
    return max(2, usable_cores())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}.") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, not {value}.")
    return value


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"{name} must be true or false, not {raw!r}.")


class Worker(UvicornWorker):
    """A uvicorn worker for this application.

    * ``lifespan: off``: the Channels router has no lifespan handler; the MCP
      session manager starts on each worker's loop at its first request
      (core.mcp.endpoint).
    * ``proxy_headers: False``: whether ``X-Forwarded-Proto`` is trusted is
      Django's ``SECURE_PROXY_SSL_HEADER`` setting alone, on every path.
    * No ``Server`` header naming the software.
    * HTTP is uvicorn's httptools protocol with the request-header limit
      (``core.http_uvicorn``, answers 431); the body limit is the application's
      ASGI middleware (``core.http_limits.BodyLimit``), shared with daphne.
    * uvicorn's access and error logs (the error log names each websocket path
      with its query string) never show a secret query value.
    * Websocket messages are not compressed unless ``DEVBENCH_WS_DEFLATE`` asks:
      deflating streamed exec output took more of the web process's CPU than
      everything else on the way from the worker to the client, and every client
      library offers it by default.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",
        "http": "core.http_uvicorn:HttpProtocol",
        "ws": "auto",
        "lifespan": "off",
        "proxy_headers": False,
        "server_header": False,
        "ws_per_message_deflate": _env_flag("DEVBENCH_WS_DEFLATE"),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # points uvicorn's loggers at gunicorn's handlers
        from core.http_limits import RedactSecrets

        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(RedactSecrets())
        # A stopping worker waits for open requests and connections (a long wait, a
        # websocket) at most as long as gunicorn would before killing it: also when no
        # master is left to kill it.
        self.config.timeout_graceful_shutdown = int(self.cfg.graceful_timeout)

    def init_process(self) -> None:
        """In the new worker process: stop when the master dies.

        A master killed outright (SIGKILL, out of memory) cannot stop its workers, and a
        uvicorn worker does not watch for it: it would go on serving the inherited socket
        alone, unsupervised. The kernel sends it SIGTERM instead (``PR_SET_PDEATHSIG``),
        which stops it gracefully within the timeout above."""
        _stop_when_parent_dies()
        if os.getppid() != self.ppid:  # the master died before that took effect
            raise SystemExit(0)
        super().init_process()


_PR_SET_PDEATHSIG = 1


def _stop_when_parent_dies() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the master's own supervision only
        logging.getLogger(__name__).warning("workers will not stop with their master")


# --- gunicorn settings (read by `gunicorn -c python:devbench_site.server`) ---------
wsgi_app = "devbench_site.asgi:application"
worker_class = "devbench_site.server.Worker"
bind = [f"{os.environ.get('DEVBENCH_HOST', '127.0.0.1')}:{_env_int('DEVBENCH_PORT', 8000)}"]
workers = _env_int("WEB_CONCURRENCY", default_workers())
timeout = _env_int("DEVBENCH_WEB_TIMEOUT", 60)
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("DEVBENCH_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
proc_name = "devbench-web"
# No control socket under $HOME: the image's user has no writable home.
control_socket_disable = True


def post_worker_init(worker: Any) -> None:
    """gunicorn hook, in a worker once the application is loaded: what is loaded now
    stays for the process's life, and full garbage collections walking it stalled every
    request of the worker (core.process_memory)."""
    from core.process_memory import freeze_loaded_objects

    freeze_loaded_objects()


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master: a worker process ended (restarted or stopped)."""
    mark_process_dead(worker.pid)
