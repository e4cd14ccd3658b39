from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from tenants.models import Tenant

_ID_ALPHABET = string.ascii_lowercase + string.digits

ALIAS_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?$",
    "An alias is 1-63 lowercase letters, digits, '.', '_' or '-', starting and ending "
    "with a letter or digit.",
    code="invalid_alias",
)


def new_public_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_workspace_id() -> str:
    return new_public_id("ws_")


class WorkspaceStatus(models.TextChoices):
    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    REMOVING = "removing"
    REMOVED = "removed"
    ERROR = "error"
    # Its node is down: nothing can reach it until the node returns (reconciliation
    # then restores what survived from ``prior_status``).
    UNAVAILABLE = "unavailable"
    # Frozen after its policy's idle timeout (``docker pause``: processes and files
    # kept); the next operation on it resumes it.
    PAUSED = "paused"


# Statuses in which a workspace still holds (or is about to hold) engine resources.
LIVE_STATUSES = (
    WorkspaceStatus.CREATING,
    WorkspaceStatus.RUNNING,
    WorkspaceStatus.STOPPED,
    WorkspaceStatus.REMOVING,
    WorkspaceStatus.UNAVAILABLE,
    WorkspaceStatus.PAUSED,
)


class WorkspaceManager(models.Manager["Workspace"]):
    """Tenant-facing rows only: the warm pool's unclaimed workspaces are invisible to
    every list, lookup, quota and usage count. Engine upkeep (pool, reconciliation,
    garbage collection, node capacity) reads ``Workspace.all_objects``."""

    def get_queryset(self) -> models.QuerySet[Workspace]:
        return super().get_queryset().filter(pooled=False)


class Workspace(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_workspace_id)
    # No index of its own: (tenant, public_id) and (tenant, status) below lead with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="workspaces", db_index=False
    )
    # NULL (not "") for "no alias/key": the conditional unique constraints rely on it.
    alias = models.CharField(  # noqa: DJ001
        max_length=63, null=True, blank=True, validators=[ALIAS_VALIDATOR]
    )
    image_ref = models.CharField(max_length=512)
    image_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=11, choices=WorkspaceStatus.choices, default=WorkspaceStatus.CREATING
    )
    # While ``unavailable``: the status and error code it had when its node went down.
    prior_status = models.CharField(max_length=11, blank=True)
    prior_error_code = models.CharField(max_length=50, blank=True)
    status_message = models.TextField(blank=True)
    # The stable code of the error that put the workspace in ``error`` (or stopped it).
    error_code = models.CharField(max_length=50, blank=True)
    persistent = models.BooleanField(default=False)
    ttl_s = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    container_id = models.CharField(max_length=100, blank=True)
    volume_name = models.CharField(max_length=100, blank=True)
    node = models.CharField(max_length=100, default="local")
    labels = models.JSONField(default=dict, blank=True)
    limits = models.JSONField(default=dict, blank=True)
    # While ``creating``: what its provisioning is doing, e.g. pulling its image
    # (``{"phase": "pulling", "image", "layers_total", "layers_done", "bytes_total",
    # "bytes_done"}``); empty otherwise. An empty ``image_id`` means the pull is pending.
    progress = models.JSONField(default=dict, blank=True)
    # The snapshot it was spawned (or forked) from: its image holds the first files.
    snapshot = models.ForeignKey(
        "Snapshot", on_delete=models.SET_NULL, null=True, blank=True, related_name="workspaces"
    )
    template = models.ForeignKey(
        "Template", on_delete=models.SET_NULL, null=True, blank=True, related_name="workspaces"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    idempotency_expires_at = models.DateTimeField(null=True, blank=True)
    # An unclaimed member of its tenant's warm pool (started, hardened, unassigned):
    # ``pool_fingerprint`` names the policy and image it was built for.
    pooled = models.BooleanField(default=False)
    pool_fingerprint = models.CharField(max_length=64, blank=True)
    # Served from the warm pool (claimed) rather than created for its spawn.
    # True: served from the warm pool; False: the pool was empty (a miss, created cold);
    # None: spawned without a pool (none configured, or a spawn a pool cannot serve).
    warm = models.BooleanField(null=True, blank=True)
    # Seconds from the row's creation to its container running (provisioning time).
    ready_s = models.FloatField(null=True, blank=True)
    # The last exec, file, shell or attach operation: idle pausing counts from here.
    last_active_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WorkspaceManager()
    all_objects = models.Manager()  # noqa: DJ012 - managers, in default-first order

    class Meta:
        ordering = ["-created_at"]
        base_manager_name = "all_objects"
        constraints = [
            # An alias names one live workspace; removed ones release it.
            models.UniqueConstraint(
                fields=["tenant", "alias"],
                condition=models.Q(alias__isnull=False) & ~models.Q(status="removed"),
                name="workspace_unique_live_alias",
            ),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="workspace_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "status"]),
            # Every request naming a workspace (tenant_id = … AND public_id = …): see Exec.
            models.Index(fields=["tenant", "public_id"]),
            models.Index(fields=["node", "status"]),
            models.Index(
                fields=["tenant", "node", "pool_fingerprint"],
                condition=models.Q(pooled=True),
                name="workspace_pool_members",
            ),
        ]

    def __str__(self) -> str:
        return self.alias or self.public_id

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


class Attachment(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="attachments")
    client_name = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    principal = models.CharField(max_length=200, blank=True)
    attached_at = models.DateTimeField(auto_now_add=True)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-attached_at"]

    def __str__(self) -> str:
        return f"{self.client_name or 'client'} on {self.workspace}"


NODE_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?$",
    "A node name is 1-63 lowercase letters, digits, '.', '_' or '-'.",
    code="invalid_node_name",
)


class NodeState(models.TextChoices):
    ACTIVE = "active"
    DRAINING = "draining"  # existing workspaces keep working; nothing new is placed
    DOWN = "down"  # no heartbeat for DEVBENCH_NODE_DOWN_AFTER_S


class Node(models.Model):
    """One Docker host and its node worker. Admin-managed; tenants only see the name.

    The worker registers the row and heartbeats; the engine endpoint is what the
    worker reports (display only): TLS material for a TCP engine stays in the
    worker's own environment. Web processes reach the engine through the worker's
    agent (``agent_url``, authenticated with ``agent_token``, its TLS certificate
    ``agent_cert`` pinned; or ``agent_socket`` when they share its host).
    """

    name = models.CharField(max_length=63, unique=True, validators=[NODE_NAME_VALIDATOR])
    engine_endpoint = models.CharField(max_length=300, blank=True)
    agent_url = models.CharField(max_length=300, blank=True)
    agent_token = models.CharField(max_length=100, blank=True)
    # The agent's TLS certificate (PEM), made by the worker at start; callers trust only it.
    agent_cert = models.TextField(blank=True)
    # The agent's Unix socket: processes on the worker's host use it instead of the URL.
    agent_socket = models.CharField(max_length=300, blank=True)
    max_workspaces = models.PositiveIntegerField(default=100)
    memory_bytes = models.PositiveBigIntegerField(
        default=0, help_text="Memory the node's workspaces may reserve in all; 0: no limit."
    )
    cpus = models.DecimalField(
        max_digits=7,
        decimal_places=2,
        default=0,
        help_text="CPUs the node's workspaces may reserve in all; 0: no limit.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text='e.g. {"runtime": "gvisor"}')
    state = models.CharField(max_length=10, choices=NodeState.choices, default=NodeState.ACTIVE)
    # An admin's drain survives the node going down and coming back.
    drain = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    version = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def new_snapshot_id() -> str:
    return new_public_id("sn_")


class SnapshotStatus(models.TextChoices):
    CREATING = "creating"
    READY = "ready"


class Snapshot(models.Model):
    """A workspace's image plus its /workspace contents, as one image on a node.

    The image lives in the tenant's namespace (``devbench-snapshots/<tenant>``,
    tag = the public id) and carries the tenant's label; only this row (looked
    up within the tenant) makes it spawnable.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_snapshot_id)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    status = models.CharField(
        max_length=10, choices=SnapshotStatus.choices, default=SnapshotStatus.CREATING
    )
    # The source is kept by id: the snapshot outlives its workspace.
    source_workspace = models.ForeignKey(
        Workspace, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source_workspace_public_id = models.CharField(max_length=32, blank=True)
    base_image_ref = models.CharField(max_length=512, blank=True)
    image_ref = models.CharField(max_length=512, blank=True)
    image_id = models.CharField(max_length=100, blank=True)
    node = models.CharField(max_length=100, default="local")
    # Where the snapshot travels between nodes: ``host/repository@sha256:…`` in the
    # installation's snapshot registry (empty: it lives on ``node`` only).
    registry_ref = models.CharField(max_length=600, blank=True)
    # Bytes the snapshot adds to its base image (the /workspace layer): what quotas count.
    size_bytes = models.PositiveBigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class Registry(models.Model):
    """Credentials for one image registry host: a tenant's, or the installation's
    (``tenant`` empty) used for every tenant without its own and for snapshots.

    The password is stored encrypted (``workspaces.registries.crypto``) and never
    leaves the platform except to the engine that pulls or pushes.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="registries"
    )
    host = models.CharField(
        max_length=255, help_text="Registry host[:port] as image references name it."
    )
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host"]
        verbose_name_plural = "registries"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "host"],
                condition=models.Q(tenant__isnull=False),
                name="registry_unique_tenant_host",
            ),
            models.UniqueConstraint(
                fields=["host"],
                condition=models.Q(tenant__isnull=True),
                name="registry_unique_installation_host",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host} ({self.tenant or 'installation'})"


def new_template_id() -> str:
    return new_public_id("tp_")


class TemplateStatus(models.TextChoices):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


TEMPLATE_NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?$",
    "A template name is 1-63 lowercase letters, digits, '.', '_' or '-'.",
    code="invalid_template_name",
)


class Template(models.Model):
    """A named, versioned environment of a tenant: a registry/local image reference, or
    an image built from a Dockerfile (and a small context) on a node, its log kept.

    Spawning by name uses the newest ready version. Built images live in the tenant's
    namespace (``devbench-templates/<tenant>``), refused as an ``image`` like snapshots.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_template_id)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="env_templates")
    name = models.CharField(max_length=63, validators=[TEMPLATE_NAME_VALIDATOR])
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True, max_length=2000)
    # Either an image reference (checked against the tenant policy at spawn) ...
    image = models.CharField(max_length=512, blank=True)
    # ... or a Dockerfile and an optional tar context built on ``node``.
    dockerfile = models.TextField(blank=True)
    context = models.BinaryField(blank=True, default=b"", editable=False)
    status = models.CharField(
        max_length=10, choices=TemplateStatus.choices, default=TemplateStatus.READY
    )
    build_log = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    status_message = models.TextField(blank=True)
    image_ref = models.CharField(max_length=512, blank=True)  # the built image's tag
    image_id = models.CharField(max_length=100, blank=True)
    node = models.CharField(max_length=100, blank=True)
    # A built image pushed to the template registry: ``host/repository@sha256:…``, pulled
    # by any node that spawns it (empty: it spawns on ``node`` only).
    registry_ref = models.CharField(max_length=600, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name", "version"], name="template_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version} ({self.public_id})"

    @property
    def built(self) -> bool:
        return bool(self.dockerfile)
