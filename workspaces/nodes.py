"""Nodes: the Docker hosts workspaces run on, and the way to each one's engine.

A node's worker (``celery worker -Q node.<name>``) registers its row, serves its
engine through the node agent and heartbeats (``workspaces.node_worker``). Any
other process reaches a node's engine with :func:`node_driver`: the local driver
where this process serves that node itself (a node worker, the embedded mode),
else a :class:`RemoteDriver` to the node's agent. Queue names come from
:func:`node_queue` only.

A node silent for ``DEVBENCH_NODE_DOWN_AFTER_S`` is ``down`` (:func:`nodes_check`):
its workspaces become ``unavailable`` and ``node_down`` tells other apps (its
running execs end ``lost``). When it heartbeats again it is back; its worker's
reconciliation restores what survived (:func:`node_restore_workspaces`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import django.dispatch
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.errors import DevBenchError, EngineUnavailable
from core.queues import node_queue
from workspaces.models import LIVE_STATUSES, Node, NodeState, Workspace, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.runtime.agent import follow_here, hand_off_here
from workspaces.runtime.base import Followed, RuntimeDriver
from workspaces.runtime.remote import NodeUnavailable, RemoteDriver

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Sent (once per outage) after a node was marked down; ``node`` is its name.
node_down = django.dispatch.Signal()

# How long a caller waits for a node's worker to take work handed to it, before queueing
# it (a worker that took it late changes nothing: the work is claimed once).
HAND_OFF_TIMEOUT_S = 2.0
# How long a process trusts what it read of a node's row (agent URL, state).
_ROW_CACHE_S = 2.0
_served: set[str] = set()
_row_cache: dict[str, tuple[float, tuple[str, str, str, str, str]]] = {}
_lock = threading.Lock()

# Workspace statuses that become unavailable with their node (removing ones finish later).
_REACHABLE_STATUSES = (
    WorkspaceStatus.CREATING,
    WorkspaceStatus.RUNNING,
    WorkspaceStatus.STOPPED,
    WorkspaceStatus.PAUSED,
)


class WorkspaceUnavailable(EngineUnavailable):
    code = "workspace_unavailable"
    http_status = 503
    default_message = "The workspace's node is down; it returns when its node does."


def queue_node(queue: str) -> str | None:
    """The node whose queue this is (``node_queue``'s inverse), else None."""
    prefix = node_queue("")
    return queue[len(prefix) :] or None if queue.startswith(prefix) else None


def node_serve_locally(name: str) -> None:
    """Declare that this process calls ``name``'s engine itself (its node worker does)."""
    with _lock:
        _served.add(name)


def node_stop_serving(name: str) -> None:
    """This process no longer calls ``name``'s engine (its worker is stopping)."""
    with _lock:
        _served.discard(name)


def node_is_local(name: str) -> bool:
    return name in _served or (settings.DEVBENCH_ENGINE_DIRECT and name == settings.DEVBENCH_NODE)


def local_node_names() -> list[str]:
    names = set(_served)
    if settings.DEVBENCH_ENGINE_DIRECT:
        names.add(settings.DEVBENCH_NODE)
    return sorted(names)


@functools.lru_cache(maxsize=64)
def _remote(node: str, url: str, token: str, cert: str, socket_path: str) -> RemoteDriver:
    return RemoteDriver(
        node=node,
        url=url,
        token=token,
        cert=cert,
        socket_path=socket_path,
        timeout_s=settings.DEVBENCH_DOCKER_TIMEOUT + 30,
    )


def _node_row(name: str) -> tuple[str, str, str, str, str]:
    now = time.monotonic()
    cached = _row_cache.get(name)
    if cached is not None and cached[0] > now:
        return cached[1]
    row = (
        Node.objects.filter(name=name)
        .values_list("agent_url", "agent_token", "state", "agent_cert", "agent_socket")
        .first()
    )
    value = row or ("", "", "", "", "")
    _row_cache[name] = (now + _ROW_CACHE_S, value)
    return value


def node_driver(name: str) -> RuntimeDriver:
    """The driver that runs engine calls on node ``name`` (local or through its agent)."""
    if node_is_local(name):
        return get_driver()
    url, token, state, cert, socket_path = _node_row(name)
    if state == NodeState.DOWN or not url:
        raise NodeUnavailable(
            f"Node '{name}' is {'down' if url else 'not serving'}; its workspaces return "
            "when it does.",
            node=name,
        )
    return _remote(name, url, token, cert, socket_path)


def workspace_driver(workspace: Workspace) -> RuntimeDriver:
    return node_driver(workspace.node)


def node_hand_off(name: str, work: str, args: dict[str, Any]) -> bool:
    """Have node ``name``'s worker start ``work`` now, through its agent (or in this
    process, if it is that worker), without the round trip through the broker and the
    node's queue: True if the worker took it. False if it cannot now (busy, shutting
    down, unreachable, not answering within HAND_OFF_TIMEOUT_S): the caller queues the
    work instead, as it would without hand-offs. The embedded mode has no node worker."""
    return _on_worker(
        name,
        f"hand-off of {work}",
        here=lambda: hand_off_here(work, args),
        there=lambda agent: agent.hand_off(work, args, timeout_s=HAND_OFF_TIMEOUT_S),
        otherwise=False,
    )


def node_follow(name: str, work: str, args: dict[str, Any]) -> Followed | None:
    """Follow ``work`` (``agent.register_follow``) on node ``name``'s worker, through its
    agent (or in this process, if it is that worker); None when it cannot now (nothing to
    follow there, unreachable, no node workers in this shape): the caller takes the slower
    way it has without follows."""
    return _on_worker(
        name,
        f"follow of {work}",
        here=lambda: follow_here(work, args),
        there=lambda agent: agent.follow(work, args),
        otherwise=None,
    )


def _on_worker(
    name: str,
    what: str,
    *,
    here: Callable[[], T],
    there: Callable[[RemoteDriver], T],
    otherwise: T,
) -> T:
    """``here()`` in node ``name``'s worker, ``there(agent)`` elsewhere; ``otherwise``
    without a node worker to ask, or if asking fails: what is asked only saves the
    caller a slower way, which it then takes."""
    try:
        if name in _served:
            return here()
        agent = _agent_of(name)
        return otherwise if agent is None else there(agent)
    except DevBenchError as exc:
        logger.info("node %s: no %s (the slower way instead): %s", name, what, exc.message)
        return otherwise
    except Exception:
        logger.exception("node %s: %s failed (the slower way instead)", name, what)
        return otherwise


def _agent_of(name: str) -> RemoteDriver | None:
    """Node ``name``'s worker's agent, if this process reaches the node through it."""
    if settings.DEVBENCH_ENGINE_DIRECT:
        return None
    driver = node_driver(name)
    return driver if isinstance(driver, RemoteDriver) else None


# --- registration and liveness (node workers) ------------------------------------------


def _labels_from_setting(raw: str) -> dict[str, str] | None:
    if not raw.strip():
        return None
    labels = {}
    for item in raw.split(","):
        key, sep, value = item.strip().partition("=")
        if key:
            labels[key.strip()] = value.strip() if sep else ""
    return labels


def node_register(
    *,
    name: str,
    agent_url: str = "",
    agent_token: str = "",
    agent_cert: str = "",
    agent_socket: str = "",
    engine_endpoint: str = "",
    version: str = "",
) -> Node:
    """Create or refresh a node's row as its worker starts; capacity and labels from the
    worker's settings where set, else the row's (the admin's). A node that was down is
    back (draining if it was drained)."""
    with transaction.atomic():
        node, _ = Node.objects.select_for_update().get_or_create(name=name)
        node.agent_url = agent_url
        node.agent_token = agent_token
        node.agent_cert = agent_cert
        node.agent_socket = agent_socket
        node.engine_endpoint = engine_endpoint or node.engine_endpoint
        node.version = version or node.version
        if settings.DEVBENCH_NODE_MAX_WORKSPACES:
            node.max_workspaces = settings.DEVBENCH_NODE_MAX_WORKSPACES
        if settings.DEVBENCH_NODE_MEMORY_MB:
            node.memory_bytes = settings.DEVBENCH_NODE_MEMORY_MB * 1024 * 1024
        if settings.DEVBENCH_NODE_CPUS:
            node.cpus = Decimal(settings.DEVBENCH_NODE_CPUS)
        labels = _labels_from_setting(settings.DEVBENCH_NODE_LABELS)
        if labels is not None:
            node.labels = labels
        node.heartbeat_at = timezone.now()
        node.state = NodeState.DRAINING if node.drain else NodeState.ACTIVE
        node.save()
    _row_cache.pop(name, None)
    return node


def node_heartbeat(*, name: str) -> bool:
    """Record that the node is alive; True when it was down until now (it is back)."""
    now = timezone.now()
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(name=name).first()
        if node is None:
            return False  # not registered (yet, or any more): the worker registers again
        returned = node.state == NodeState.DOWN
        node.heartbeat_at = now
        if returned:
            node.state = NodeState.DRAINING if node.drain else NodeState.ACTIVE
        node.save(update_fields=["heartbeat_at", "state", "updated_at"])
    return returned


def node_sign_off(*, name: str, agent_token: str) -> bool:
    """A worker stopping cleanly withdraws its node's heartbeat: nothing new is placed
    there from now on (rather than until the heartbeat goes stale), and the next
    :func:`nodes_check` marks it down as if it had gone silent. Only while the row
    still names this worker's agent (a newer worker may have taken the node over).
    True if it did."""
    silent_since = timezone.now() - timedelta(seconds=settings.DEVBENCH_NODE_DOWN_AFTER_S + 1)
    signed_off = (
        Node.objects.filter(name=name, agent_token=agent_token)
        .exclude(state=NodeState.DOWN)
        .update(heartbeat_at=silent_since, updated_at=timezone.now())
    )
    _row_cache.pop(name, None)
    return signed_off > 0


def node_ensure_local() -> None:
    """This process serves its own node (embedded mode, tests): keep its row alive."""
    for name in local_node_names():
        if not node_heartbeat(name=name) and not Node.objects.filter(name=name).exists():
            node_register(name=name, engine_endpoint=settings.DEVBENCH_DOCKER_HOST)


def node_set_drain(*, node: Node, drain: bool) -> Node:
    """Drain a node (nothing new is placed there; what runs keeps running) or undo it."""
    with transaction.atomic():
        row = Node.objects.select_for_update().get(pk=node.pk)
        row.drain = drain
        if row.state != NodeState.DOWN:
            row.state = NodeState.DRAINING if drain else NodeState.ACTIVE
        row.save(update_fields=["drain", "state", "updated_at"])
    _row_cache.pop(row.name, None)
    return row


def _mark_down(node: Node) -> bool:
    message = (
        f"Node '{node.name}' stopped answering (last heartbeat "
        f"{node.heartbeat_at.isoformat() if node.heartbeat_at else 'never'}); the workspace "
        "returns when its node does."
    )
    with transaction.atomic():
        if (
            not Node.objects.filter(pk=node.pk)
            .exclude(state=NodeState.DOWN)
            .update(state=NodeState.DOWN, updated_at=timezone.now())
        ):
            return False  # another checker got there first
        for status in _REACHABLE_STATUSES:
            Workspace.all_objects.filter(node=node.name, status=status).update(
                prior_status=status,
                prior_error_code=F("error_code"),
                status=WorkspaceStatus.UNAVAILABLE,
                error_code="node_unavailable",
                status_message=message,
                updated_at=timezone.now(),
            )
    _row_cache.pop(node.name, None)
    logger.warning("node %s is down", node.name)
    return True


def _reconcile_soon(name: str) -> None:
    from workspaces.tasks import reconcile_node_task

    reconcile_node_task.apply_async(args=[name], queue=node_queue(name))


def nodes_check() -> list[str]:
    """Heartbeat the nodes this process serves; mark silent ones down. Returns those."""
    for name in local_node_names():
        try:
            get_driver().ping()
        except EngineUnavailable:
            continue  # an engine that does not answer keeps no node alive
        if node_heartbeat(name=name):
            _reconcile_soon(name)  # back: bring its workspaces in line (as a worker does)
    cutoff = timezone.now() - timedelta(seconds=settings.DEVBENCH_NODE_DOWN_AFTER_S)
    down = []
    for node in Node.objects.exclude(state=NodeState.DOWN).filter(heartbeat_at__lt=cutoff):
        if _mark_down(node):
            down.append(node.name)
            node_down.send(sender=Node, node=node.name)
    return down


def node_restore_workspaces(*, node: str) -> int:
    """Undo ``unavailable`` on a node that is back: each workspace gets the status it
    had; reconciliation then matches it to what the engine still has."""
    restored = 0
    for status in _REACHABLE_STATUSES:
        restored += Workspace.all_objects.filter(
            node=node, status=WorkspaceStatus.UNAVAILABLE, prior_status=status
        ).update(
            status=status,
            error_code=F("prior_error_code"),
            status_message="",
            prior_status="",
            prior_error_code="",
            updated_at=timezone.now(),
        )
    return restored


def nodes_serving() -> list[str]:
    """Nodes that may take engine work now (not down), plus the ones this process serves."""
    names = set(Node.objects.exclude(state=NodeState.DOWN).values_list("name", flat=True))
    return sorted(names | set(local_node_names()))


def engine_ready() -> None:
    """Readiness: this process's engine where it has one, else at least one active node."""
    if settings.DEVBENCH_ENGINE_DIRECT:
        get_driver().ping()
        return
    if not Node.objects.filter(state=NodeState.ACTIVE).exists():
        raise NodeUnavailable(
            "No node is active (every node is down, draining or unregistered).", node=""
        )


def live_workspaces_on(node: str) -> int:
    return Workspace.all_objects.filter(node=node, status__in=LIVE_STATUSES).count()
