"""Placement: which node a new workspace goes to.

A node qualifies when it is ``active`` (not draining, not down), heartbeat
fresh (or served by this process), carries every required label (the
tenant policy's plus the request's), and has room: a free workspace slot and
the workspace's memory and CPUs free beside what its live workspaces reserve.

Among those, ``DEVBENCH_PLACEMENT=spread`` (default) picks the node with the
largest free share of its tightest resource (so nodes fill in proportion to
their size), ``pack`` the smallest (fill one node before the next); ties go
to the node name. The caller locks the chosen row and re-checks its room
(:func:`node_has_room`) so concurrent spawns never over-commit a node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.errors import DevBenchError, ValidationFailed
from workspaces.models import LIVE_STATUSES, Node, NodeState, Workspace, WorkspaceStatus
from workspaces.nodes import node_ensure_local, node_is_local

MIB = 1024 * 1024


class CapacityExhausted(DevBenchError):
    code = "capacity_exhausted"
    http_status = 503
    default_message = "No node has room for another workspace."


class NodeLabelsConflict(ValidationFailed):
    code = "node_labels_conflict"
    default_message = "The requested node labels contradict the tenant policy's."


class NoNodeMatches(ValidationFailed):
    code = "node_labels_unmatched"
    default_message = "No node carries the required labels."


@dataclass(frozen=True)
class NodeLoad:
    """A node's capacity and what its live workspaces reserve of it."""

    node: Node
    workspaces: int
    memory_bytes: int
    cpus: float

    @property
    def shares_free(self) -> tuple[float, float, float]:
        node = self.node

        def free(used: float, total: float) -> float:
            return 1.0 if total <= 0 else max(0.0, 1.0 - used / total)

        return (
            free(self.workspaces, node.max_workspaces),
            free(self.memory_bytes, node.memory_bytes),
            free(self.cpus, float(node.cpus)),
        )

    def has_room(self, *, memory_bytes: int, cpus: float) -> bool:
        node = self.node
        if self.workspaces + 1 > node.max_workspaces:
            return False
        if node.memory_bytes and self.memory_bytes + memory_bytes > node.memory_bytes:
            return False
        return not (float(node.cpus) and self.cpus + cpus > float(node.cpus) + 1e-9)


def limits_reservation(limits: Mapping[str, Any]) -> tuple[int, float]:
    """(memory bytes, CPUs) a workspace with these limits reserves on its node."""
    return int(limits.get("memory_mb") or 0) * MIB, float(limits.get("cpus") or 0)


def node_loads(nodes: Iterable[Node]) -> list[NodeLoad]:
    nodes = list(nodes)
    counts: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    rows = Workspace.all_objects.filter(
        node__in=[n.name for n in nodes], status__in=LIVE_STATUSES
    ).values_list("node", "limits", "status")
    for name, limits, status in rows:
        memory, cpus = limits_reservation(limits or {})
        if status == WorkspaceStatus.PAUSED:
            cpus = 0.0  # frozen: it keeps its memory but uses no CPU
        entry = counts[name]
        entry[0] += 1
        entry[1] += memory
        entry[2] += cpus
    return [
        NodeLoad(
            node=n,
            workspaces=int(counts[n.name][0]),
            memory_bytes=int(counts[n.name][1]),
            cpus=float(counts[n.name][2]),
        )
        for n in nodes
    ]


def node_alive(node: Node) -> bool:
    """Served by this process, or its heartbeat is fresh."""
    if node_is_local(node.name):
        return True
    cutoff = timezone.now() - timedelta(seconds=settings.DEVBENCH_NODE_DOWN_AFTER_S)
    return node.heartbeat_at is not None and node.heartbeat_at >= cutoff


def required_labels(
    *, policy_labels: Mapping[str, str] | None, requested: Mapping[str, str] | None
) -> dict[str, str]:
    """The policy's labels plus the request's; a request cannot override the policy."""
    labels = {str(k): str(v) for k, v in (requested or {}).items()}
    for key, value in (policy_labels or {}).items():
        if key in labels and labels[key] != str(value):
            raise NodeLabelsConflict(
                f"The tenant policy requires node label {key}={value}.",
                extra={"label": key, "policy": str(value), "requested": labels[key]},
            )
        labels[str(key)] = str(value)
    return labels


def node_place(
    *,
    labels: Mapping[str, str],
    memory_bytes: int,
    cpus: float,
    only: Iterable[str] | None = None,
) -> Node:
    """The node a new workspace with these needs goes to (or why there is none);
    ``only``: among these nodes (e.g. those holding its snapshot's image)."""
    node_ensure_local()
    candidates = Node.objects.all() if only is None else Node.objects.filter(name__in=list(only))
    labelled = [
        n
        for n in candidates
        if all(str(n.labels.get(k)) == v and k in n.labels for k, v in labels.items())
    ]
    if not labelled:
        raise NoNodeMatches(
            "No node carries the labels "
            + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            + ".",
            extra={"labels": dict(labels)},
        )
    open_nodes = [n for n in labelled if n.state == NodeState.ACTIVE and node_alive(n)]
    fits = [
        load
        for load in node_loads(open_nodes)
        if load.has_room(memory_bytes=memory_bytes, cpus=cpus)
    ]
    if not fits:
        raise CapacityExhausted(
            f"No node has room for another workspace ({memory_bytes // MIB} MiB, {cpus:g} CPUs)"
            + (f" with labels {dict(labels)}" if labels else "")
            + f": {len(labelled) - len(open_nodes)} draining or down, the rest full.",
            extra={"labels": dict(labels), "memory_mb": memory_bytes // MIB, "cpus": cpus},
        )
    pack = settings.DEVBENCH_PLACEMENT == "pack"
    best = min(
        fits,
        key=lambda load: ((1 if pack else -1) * min(load.shares_free), load.node.name),
    )
    return best.node


def node_has_room(*, node: Node, memory_bytes: int, cpus: float) -> bool:
    """Re-check under the node row's lock, just before the workspace row is written."""
    if node.state != NodeState.ACTIVE:
        return False
    return node_loads([node])[0].has_room(memory_bytes=memory_bytes, cpus=cpus)
