"""What a node's worker does besides running tasks: agent, registration, heartbeat.

Started once per worker process (``worker_ready``) when the worker consumes its
node's queue. The engine endpoint and any TLS material stay in this process's
environment (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``);
other processes only get the agent's URL, its shared secret and its TLS
certificate (the key stays in this process's memory; ``runtime.agent_tls``).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

from core.errors import DevBenchError
from workspaces import nodes
from workspaces.runtime import get_driver
from workspaces.runtime.agent import (
    AgentServer,
    AgentSocketServer,
    agent_serve,
    agent_serve_socket,
)
from workspaces.runtime.agent_tls import (
    agent_certificate_generate,
    agent_server_context,
    certificate_fingerprint,
)

logger = logging.getLogger(__name__)

_state: dict[str, object] = {}
# How long a stopping worker waits for a heartbeat in flight (a database call).
HEARTBEAT_JOIN_S = 10.0
_stop = threading.Event()


def _socket_path() -> str:
    local = _state.get("socket")
    return local.path if isinstance(local, AgentSocketServer) else ""


def _register(name: str, server: AgentServer, token: str, cert: str) -> None:
    version = ""
    try:
        version = get_driver().engine_info().version
    except DevBenchError as exc:
        logger.warning("node %s: engine not answering at start: %s", name, exc.message)
    nodes.node_register(
        name=name,
        agent_url=settings.DEVBENCH_NODE_AGENT_URL or server.url,
        agent_token=token,
        agent_cert=cert,
        agent_socket=_socket_path(),
        engine_endpoint=settings.DEVBENCH_DOCKER_HOST,
        version=version,
    )


def _heartbeat_loop(
    names: list[str],
    server: AgentServer,
    token: str,
    cert: str,
    on_return: Callable[[str], None],
) -> None:
    while not _stop.wait(settings.DEVBENCH_NODE_HEARTBEAT_S):
        close_old_connections()
        try:
            get_driver().ping()
        except DevBenchError:
            continue  # an engine that does not answer keeps no node alive
        for name in names:
            try:
                if nodes.node_heartbeat(name=name):
                    logger.warning("node %s is back", name)
                    on_return(name)
                elif not nodes.Node.objects.filter(name=name).exists():
                    _register(name, server, token, cert)  # the row was deleted: register again
            except Exception:  # the database may be away for a moment; try again next beat
                logger.exception("node %s: heartbeat failed", name)


def node_worker_start(*, names: list[str], on_return: Callable[[str], None]) -> None:
    """Serve these nodes' engine (this process's) and keep their rows alive."""
    if "server" in _state:
        return
    token = settings.DEVBENCH_NODE_AGENT_TOKEN or secrets.token_urlsafe(32)
    cert, tls = "", None
    if settings.DEVBENCH_NODE_AGENT_TLS:
        # One key for the process (it serves all ``names`` on one port).
        cert, key = agent_certificate_generate(node=names[0])
        tls = agent_server_context(cert_pem=cert, key_pem=key)
        # What the admin shows for the node: an operator can tell it is this worker.
        logger.info("node agent certificate SHA-256 %s", certificate_fingerprint(cert))
    server = agent_serve(
        bind=settings.DEVBENCH_NODE_AGENT_BIND, driver=get_driver(), token=token, tls=tls
    )
    _state["server"] = server
    if settings.DEVBENCH_NODE_AGENT_SOCKET_DIR:
        try:
            _state["socket"] = agent_serve_socket(
                directory=settings.DEVBENCH_NODE_AGENT_SOCKET_DIR, driver=get_driver(), token=token
            )
        except OSError as exc:  # callers on this host use the URL, as other hosts do
            logger.warning(
                "node agent: no Unix socket in %s (%s)",
                settings.DEVBENCH_NODE_AGENT_SOCKET_DIR,
                exc,
            )
    _state["token"] = token
    _state["names"] = list(names)
    for name in names:
        nodes.node_serve_locally(name)
        _register(name, server, token, cert)
    _stop.clear()
    heartbeat = threading.Thread(
        target=_heartbeat_loop,
        args=(names, server, token, cert, on_return),
        name="node-heartbeat",
        daemon=True,
    )
    heartbeat.start()
    _state["heartbeat"] = heartbeat


def node_worker_stop() -> None:
    """Stop serving: the agents close, and each node is signed off (``nodes.node_sign_off``)
    so that nothing new is placed on it while no worker serves it."""
    _stop.set()
    heartbeat = _state.pop("heartbeat", None)
    if isinstance(heartbeat, threading.Thread):
        # Ended before the sign-off, so no late beat undoes it (a beat in flight finishes).
        heartbeat.join(timeout=HEARTBEAT_JOIN_S)
    for key in ("server", "socket"):
        server = _state.pop(key, None)
        if isinstance(server, AgentServer | AgentSocketServer):
            server.shutdown()
            server.server_close()
    token = _state.pop("token", "")
    names = _state.pop("names", [])
    assert isinstance(token, str) and isinstance(names, list)
    close_old_connections()
    for name in names:
        nodes.node_stop_serving(name)
        try:
            if nodes.node_sign_off(name=name, agent_token=token):
                logger.info("node %s signed off: nothing new is placed on it", name)
        except Exception:  # the database may be gone first: the heartbeat then goes stale
            logger.exception("node %s: sign-off failed", name)
