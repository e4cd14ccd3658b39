"""The warm pool: started, hardened, unassigned workspaces that a spawn claims.

A pool belongs to one (tenant, node, fingerprint): the fingerprint hashes every
container setting the tenant's policy and image decide (limits, network, user,
runtime, security options, image), so a member is exactly the container a cold
spawn would create, and any policy change that alters one retires the members
built under the old one. Members are ordinary ``Workspace`` rows with
``pooled=True`` — invisible to ``Workspace.objects``, hence to every tenant list,
lookup, quota and usage count — provisioned by the same code as a cold spawn on
the node's worker. Pools hold the tenant's default image with the policy's
limits; other spawns (another image, smaller limits, a snapshot or template)
are created cold.

A claim is one short transaction in the request: the tenant's policy row lock
(quota and alias, as a cold spawn) and ``SELECT … FOR UPDATE SKIP LOCKED`` on a
ready member, which then becomes the caller's workspace (alias, TTL, key,
persistence). No two callers can get one member, whichever process serves them.
The claimed member's container is then inspected once on its node (a member can die
between two maintenance runs): a dead one goes back to the pool as stopped, to be
retired and replaced by its maintenance, and the claim moves on to the next member,
or to a cold spawn — never an error for the caller.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, Q
from django.utils import timezone

from core.errors import DevBenchError
from core.queues import node_queue
from tenants.models import Tenant, TenantPolicy
from usage.services import usage_run_sync
from workspaces.admission import workspace_admit
from workspaces.images import image_check, image_reference_parse
from workspaces.models import Node, NodeState, Workspace, WorkspaceStatus
from workspaces.nodes import node_driver, node_ensure_local, nodes_serving
from workspaces.placement import NodeLoad, limits_reservation, node_alive, node_loads
from workspaces.policy import limits_resolve
from workspaces.provisioning import workspace_provision_enqueue, workspace_teardown
from workspaces.runtime.base import LABEL_INSTANCE, LABEL_TENANT, LABEL_WORKSPACE
from workspaces.spec import container_spec, engine_name

logger = logging.getLogger(__name__)

# Spec fields that name one workspace rather than how it is built: not fingerprinted.
_IDENTITY_FIELDS = ("name", "labels", "mounts", "restart_policy")
_SETTLED = (WorkspaceStatus.REMOVING, WorkspaceStatus.REMOVED)


def pool_image_ref(policy: TenantPolicy) -> str:
    """The image a tenant's pool holds: its policy's default image."""
    return image_reference_parse(policy.default_image).familiar()


def _pool_limits(policy: TenantPolicy) -> dict[str, Any]:
    return limits_resolve(policy=policy, requested=None).as_dict()


def pool_fingerprint(*, policy: TenantPolicy, image_ref: str) -> str:
    """Hash of the container settings a spawn under this policy gets for this image."""
    # The probe's tenant only names labels, which are not fingerprinted: no need to load it.
    probe = Workspace(
        tenant=Tenant(slug="-"), image_ref=image_ref, limits=_pool_limits(policy), volume_name="-"
    )
    spec = dataclasses.asdict(container_spec(probe, policy))
    for name in _IDENTITY_FIELDS:
        spec.pop(name, None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def pool_serves(*, policy: TenantPolicy, image_ref: str, limits: dict[str, Any]) -> bool:
    """Whether a spawn of this image with these limits may be served from the pool."""
    return (
        policy.warm_pool_size > 0
        and image_ref == pool_image_ref(policy)
        and limits == _pool_limits(policy)
    )


def _labels_match(node: Node, labels: dict[str, str]) -> bool:
    return all(k in node.labels and str(node.labels[k]) == v for k, v in labels.items())


def _open_nodes(labels: dict[str, str]) -> list[str]:
    """Active nodes with these labels that are alive: one query (a claim's hot path)."""
    node_ensure_local()
    return [
        n.name
        for n in Node.objects.filter(state=NodeState.ACTIVE)
        if node_alive(n) and _labels_match(n, labels)
    ]


# Dead members one spawn retires before it gives up on the pool and spawns cold.
_CLAIM_ATTEMPTS = 3


def pool_claim(
    *,
    tenant: Tenant,
    policy: TenantPolicy,
    image_ref: str,
    labels: dict[str, str],
    fields: dict[str, Any],
    replay: Callable[[], Workspace | None],
) -> tuple[Workspace, bool] | None:
    """Make a ready member the caller's workspace: ``(workspace, created)``, or None when
    the pool has none alive (the caller spawns cold). ``replay`` finds the workspace an
    idempotency key already made (checked again under the lock).

    A member may have died since the last maintenance: each claimed member is inspected
    once on its node after the claim commits (one engine call, no lock held), and a dead
    one is handed back to the pool for retirement before the next member is tried."""
    nodes = _open_nodes(labels)
    if not nodes:
        return None
    fingerprint = pool_fingerprint(policy=policy, image_ref=image_ref)
    for _ in range(_CLAIM_ATTEMPTS):
        claimed = _claim_one(
            tenant=tenant, policy=policy, image_ref=image_ref, nodes=nodes,
            fingerprint=fingerprint, fields=fields, replay=replay,
        )  # fmt: skip
        if claimed is None:
            return None
        member, created = claimed
        if not created:
            return member, False
        if _running(member):
            break
        _unclaim_dead(member)
    else:
        return None
    if member.persistent:
        _make_persistent(member)
    usage_run_sync(workspace=member, at=member.created_at)  # running time starts at the claim
    return member, True


def _claim_one(
    *,
    tenant: Tenant,
    policy: TenantPolicy,
    image_ref: str,
    nodes: list[str],
    fingerprint: str,
    fields: dict[str, Any],
    replay: Callable[[], Workspace | None],
) -> tuple[Workspace, bool] | None:
    """The claim's transaction: the oldest ready member becomes the caller's workspace."""
    now = timezone.now()
    with transaction.atomic():
        locked = TenantPolicy.objects.select_for_update().get(pk=policy.pk)
        existing = replay()
        if existing is not None:
            return existing, False
        workspace_admit(tenant=tenant, locked_policy=locked, alias=fields.get("alias"))
        member = (
            Workspace.all_objects.select_for_update(skip_locked=True)
            .filter(
                tenant=tenant,
                pooled=True,
                status=WorkspaceStatus.RUNNING,
                pool_fingerprint=fingerprint,
                image_ref=image_ref,
                node__in=nodes,
                created_at__gte=now - timedelta(seconds=locked.warm_pool_max_age_s),
            )
            .exclude(container_id="")
            .order_by("created_at")
            .first()
        )
        if member is None:
            return None
        claimed = {
            **fields, "pooled": False, "warm": True, "created_at": now, "last_active_at": now
        }  # fmt: skip
        for name, value in claimed.items():
            setattr(member, name, value)
        member.save(update_fields=[*claimed, "updated_at"])
        tenant_id, node = tenant.pk, member.node
        transaction.on_commit(lambda: pool_refill_enqueue(tenant_id=tenant_id, node=node))
    return member, True


def _running(member: Workspace) -> bool:
    """Whether the member's container runs, asked of its node's engine. An engine that
    cannot answer counts as dead: the caller then gets another member or a cold spawn."""
    try:
        return node_driver(member.node).inspect(member.container_id).running
    except DevBenchError as exc:
        logger.warning("pool: claimed %s not usable: %s", member, exc.message)
        return False


# A dead member's row back as an unclaimed, stopped member: invisible to the tenant again,
# its alias and idempotency key released, never claimed (claims take running members).
_UNCLAIMED = {
    "pooled": True,
    "status": WorkspaceStatus.STOPPED,
    "warm": None,
    "alias": None,
    "persistent": False,
    "ttl_s": None,
    "expires_at": None,
    "idempotency_key": None,
    "idempotency_expires_at": None,
    "created_by_id": None,
}


def _unclaim_dead(member: Workspace) -> None:
    """Give a dead claimed member back to its pool, whose maintenance (queued here)
    retires it — stopped members are stale — and creates its replacement."""
    Workspace.all_objects.filter(pk=member.pk, pooled=False).update(
        **_UNCLAIMED, updated_at=timezone.now()
    )
    pool_refill_enqueue(tenant_id=member.tenant_id, node=member.node)


def _make_persistent(workspace: Workspace) -> None:
    """Members are built ephemeral; a persistent claim gets the restart policy a cold
    persistent spawn has. Should the engine refuse, reconciliation restarts persistent
    workspaces anyway."""
    try:
        node_driver(workspace.node).restart_policy_set(workspace.container_id, "unless-stopped")
    except DevBenchError as exc:
        logger.warning("restart policy of claimed %s not set: %s", workspace, exc.message)


def pool_refill_enqueue(*, tenant_id: int, node: str) -> None:
    from workspaces.tasks import pool_maintain_task

    pool_maintain_task.apply_async(args=[tenant_id, node], queue=node_queue(node))


@dataclass
class PoolReport:
    tenant: str
    node: str
    wanted: int = 0
    kept: int = 0
    retired: list[str] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)


def _node_takes_pool(node: Node | None, policy: TenantPolicy) -> bool:
    return (
        node is not None
        and node.state == NodeState.ACTIVE
        and not node.drain
        and _labels_match(node, {str(k): str(v) for k, v in policy.node_labels.items()})
    )


def _retire(member: Workspace, report: PoolReport) -> None:
    """Tear a member down unless a claim took it first (the conditional update waits for
    a claim's row lock and then finds it no longer pooled)."""
    taken = Workspace.all_objects.filter(pk=member.pk, pooled=True).exclude(status__in=_SETTLED)
    if not taken.update(status=WorkspaceStatus.REMOVING, updated_at=timezone.now()):
        return
    member.status = WorkspaceStatus.REMOVING
    try:
        workspace_teardown(workspace=member, force=True, remove_volume=True)
    except DevBenchError as exc:  # reconciliation finishes an interrupted removal
        logger.warning("pool: could not remove %s: %s", member, exc.message)
    report.retired.append(member.public_id)


def _stale(member: Workspace, *, alive: set[str], fingerprint: str, image_id: str) -> bool:
    if member.status == WorkspaceStatus.CREATING:
        cutoff = timezone.now() - timedelta(seconds=settings.DEVBENCH_SPAWN_WAIT_S)
        return member.created_at < cutoff or member.pool_fingerprint != fingerprint
    return (
        member.status != WorkspaceStatus.RUNNING
        or member.public_id not in alive
        or member.pool_fingerprint != fingerprint
        or (bool(image_id) and member.image_id != image_id)
    )


def _load_after(load: NodeLoad, count: int, memory: int, cpus: float) -> NodeLoad:
    return NodeLoad(
        node=load.node,
        workspaces=load.workspaces + count,
        memory_bytes=load.memory_bytes + count * memory,
        cpus=load.cpus + count * cpus,
    )


def _pool_image_id(*, policy: TenantPolicy, node: str) -> str:
    """The pool image's id on the node ("" when it is gone or no longer allowed)."""
    try:
        return image_check(policy=policy, image=None, node=node).info.id
    except DevBenchError as exc:
        logger.warning("pool of %s on %s: %s", policy.tenant_id, node, exc.message)
        return ""


def pool_maintain(*, tenant_id: int, node: str) -> PoolReport:
    """Bring one tenant's pool on one node (run by that node's worker) to its size:
    retire members that died, aged, no longer match the policy or image, or exceed the
    size (all of them on a draining node); shrink by one when the node has no room left
    for a cold spawn; create what is missing while one workspace of headroom remains."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return PoolReport(tenant="", node=node)  # deleted: its rows went with it
    policy = TenantPolicy.objects.get(tenant=tenant)
    report = PoolReport(tenant=tenant.slug, node=node)
    node_ensure_local()
    node_row = Node.objects.filter(name=node).first()
    wanted = policy.warm_pool_size if tenant.active and _node_takes_pool(node_row, policy) else 0
    image_ref = pool_image_ref(policy)
    fingerprint = pool_fingerprint(policy=policy, image_ref=image_ref)
    image_id = _pool_image_id(policy=policy, node=node) if wanted else ""
    if not image_id:
        wanted = 0
    members = list(
        Workspace.all_objects.filter(tenant=tenant, node=node, pooled=True)
        .exclude(status__in=_SETTLED)
        .select_related("tenant")
        .order_by("created_at")
    )
    alive: set[str] = set()
    if any(m.status == WorkspaceStatus.RUNNING for m in members):
        found = node_driver(node).list_by_labels(
            {LABEL_INSTANCE: settings.DEVBENCH_INSTANCE, LABEL_TENANT: tenant.slug}
        )
        alive = {c.labels.get(LABEL_WORKSPACE, "") for c in found if c.status == "running"}
    max_age = timedelta(seconds=policy.warm_pool_max_age_s)
    keep = []
    for member in members:
        too_old = member.created_at < timezone.now() - max_age
        if too_old or _stale(member, alive=alive, fingerprint=fingerprint, image_id=image_id):
            _retire(member, report)
        else:
            keep.append(member)
    while len(keep) > wanted:
        _retire(keep.pop(0), report)
    memory, cpus = limits_reservation(_pool_limits(policy))
    if keep and node_row is not None:
        load = node_loads([node_row])[0]
        if not load.has_room(memory_bytes=memory, cpus=cpus):
            _retire(keep.pop(0), report)  # give the node's last room back to cold spawns
    report.wanted, report.kept = wanted, len(keep)
    if wanted > len(keep) and node_row is not None:
        report.created = _members_create(
            policy=policy, node=node_row, image_ref=image_ref, image_id=image_id,
            fingerprint=fingerprint, wanted=wanted,
        )  # fmt: skip
    return report


def _members_create(
    *,
    policy: TenantPolicy,
    node: Node,
    image_ref: str,
    image_id: str,
    fingerprint: str,
    wanted: int,
) -> list[str]:
    """Insert the missing members under the policy's and the node's locks (concurrent
    refills count each other's rows) and queue their provisioning on the node."""
    limits = _pool_limits(policy)
    memory, cpus = limits_reservation(limits)
    made = []
    with transaction.atomic():
        TenantPolicy.objects.select_for_update().get(pk=policy.pk)
        locked_node = Node.objects.select_for_update().get(pk=node.pk)
        have = (
            Workspace.all_objects.filter(tenant_id=policy.tenant_id, node=node.name, pooled=True)
            .exclude(status__in=_SETTLED)
            .count()
        )
        load = node_loads([locked_node])[0]
        for count in range(wanted - have):
            # Keep room for one cold spawn beside the new member.
            if not _load_after(load, count + 1, memory, cpus).has_room(
                memory_bytes=memory, cpus=cpus
            ):
                break
            member = Workspace(
                tenant_id=policy.tenant_id,
                node=node.name,
                image_ref=image_ref,
                image_id=image_id,
                limits=limits,
                pooled=True,
                pool_fingerprint=fingerprint,
            )
            member.volume_name = f"{engine_name(member)}-data"
            member.save(force_insert=True)
            made.append(member)
            transaction.on_commit(
                lambda member=member: workspace_provision_enqueue(workspace=member)  # type: ignore[misc]
            )
    return [m.public_id for m in made]


def pool_dispatch() -> int:
    """Queue a maintenance of every (tenant, node) pool that should exist or still has
    members, on that node's queue; returns how many were queued."""
    serving = nodes_serving()
    pairs: set[tuple[int, str]] = set(
        Workspace.all_objects.filter(pooled=True)
        .exclude(status__in=_SETTLED)
        .values_list("tenant_id", "node")
        .distinct()
    )
    nodes = list(Node.objects.filter(name__in=serving))
    for policy in TenantPolicy.objects.filter(warm_pool_size__gt=0, tenant__active=True):
        pairs.update((policy.tenant_id, n.name) for n in nodes if _node_takes_pool(n, policy))
    queued = 0
    for tenant_id, node in sorted(pairs):
        if node in serving:
            pool_refill_enqueue(tenant_id=tenant_id, node=node)
            queued += 1
    return queued


def pool_policy_changed(*, policy: TenantPolicy) -> None:
    """A saved policy: maintain the tenant's pools once it commits, when it has or wants
    one (a policy change retires members it no longer matches at once)."""
    tenant_id = policy.tenant_id
    has_members = (
        Workspace.all_objects.filter(tenant_id=tenant_id, pooled=True)
        .exclude(status__in=_SETTLED)
        .exists()
    )
    if policy.warm_pool_size or has_members:
        transaction.on_commit(lambda: pool_dispatch_tenant(tenant_id=tenant_id))


def pool_dispatch_tenant(*, tenant_id: int) -> None:
    """After a policy change: maintain the tenant's pools now (retire what no longer fits)."""
    serving = nodes_serving()
    used = set(
        Workspace.all_objects.filter(tenant_id=tenant_id, pooled=True).values_list(
            "node", flat=True
        )
    )
    known = set(Node.objects.filter(name__in=serving).values_list("name", flat=True))
    for node in sorted(used | known):
        if node in serving:
            pool_refill_enqueue(tenant_id=tenant_id, node=node)


@dataclass(frozen=True)
class PoolState:
    node: str
    image: str
    size: int
    ready: int
    creating: int
    hits: int
    misses: int
    refill_latency_s: float | None


def pool_states(*, tenants: Iterable[Tenant]) -> dict[str, list[PoolState]]:
    """Per tenant slug: its pools (one per node that holds members or should), with the
    tenant's hits (spawns served warm) and misses (spawns the pool could not serve)."""
    out: dict[str, list[PoolState]] = {}
    for tenant in tenants:
        policy = TenantPolicy.objects.get(tenant=tenant)
        rows = (
            Workspace.all_objects.filter(tenant=tenant, pooled=True)
            .exclude(status__in=_SETTLED)
            .values("node")
            .annotate(
                ready=Count("pk", filter=Q(status=WorkspaceStatus.RUNNING)),
                creating=Count("pk", filter=Q(status=WorkspaceStatus.CREATING)),
            )
        )
        spawned = Workspace.objects.filter(tenant=tenant).aggregate(
            hits=Count("pk", filter=Q(warm=True)), misses=Count("pk", filter=Q(warm=False))
        )
        latency = (
            Workspace.all_objects.filter(tenant=tenant, ready_s__isnull=False)
            .filter(Q(pooled=True) | Q(warm=True))
            .order_by("-created_at")[:20]
            .aggregate(avg=Avg("ready_s"))
        )
        by_node = {r["node"]: r for r in rows}
        if policy.warm_pool_size:
            for name in _open_nodes({str(k): str(v) for k, v in policy.node_labels.items()}):
                by_node.setdefault(name, {"node": name, "ready": 0, "creating": 0})
        out[tenant.slug] = [
            PoolState(
                node=name,
                image=pool_image_ref(policy),
                size=policy.warm_pool_size,
                ready=int(row["ready"]),
                creating=int(row["creating"]),
                hits=int(spawned["hits"]),
                misses=int(spawned["misses"]),
                refill_latency_s=latency["avg"],
            )
            for name, row in sorted(by_node.items())
        ]
    return out
