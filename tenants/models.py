from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.utils import timezone

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$"
SLUG_VALIDATOR = RegexValidator(
    SLUG_PATTERN,
    "Use 1-50 lowercase letters, digits and inner hyphens.",
    code="invalid_slug",
)


def is_slug(value: str) -> bool:
    """Whether ``value`` can name a tenant at all (checked before any lookup)."""
    return re.fullmatch(SLUG_PATTERN, value) is not None


class Tenant(models.Model):
    slug = models.CharField(max_length=50, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A tenant always has its policy: it is created with the tenant, whatever creates
        the tenant (service, admin, fixtures), so reading it never has to write."""
        creating = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if creating:
                TenantPolicy.objects.get_or_create(tenant_id=self.pk)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# Roles that may administer a tenant (members, tokens, policy).
MANAGING_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # Empty: added by hand (rules never touch it). Otherwise the id of the sign-in provider
    # whose membership rules granted it; those rules update or remove it at each sign-in.
    granted_by = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        ordering = ["tenant__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


# Higher wins when several membership rules match the same tenant.
ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3, Role.OWNER: 4}


class MembershipRule(models.Model):
    """Maps a claim value of one sign-in provider to a membership (tenant + role).

    Applied at each sign-in with that provider (browser, and the first bearer token
    of a new user): memberships the rules grant are created, updated or removed;
    memberships added by hand are left alone.
    """

    provider_id = models.CharField(
        max_length=100,
        help_text="The allauth provider id of the OpenID Connect app (e.g. 'corp-sso').",
    )
    claim = models.CharField(
        max_length=100,
        default="groups",
        help_text="Claim name; a dotted path reaches into objects (e.g. 'realm_access.roles').",
    )
    value = models.CharField(
        max_length=200, help_text="Exact value; matches a string claim or any item of a list."
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="membership_rules")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider_id", "claim", "value", "tenant"],
                name="membership_rule_unique",
            )
        ]
        ordering = ["provider_id", "claim", "value"]

    def __str__(self) -> str:
        return f"{self.provider_id}: {self.claim} = {self.value} -> {self.tenant} ({self.role})"


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"


class ApiToken(models.Model):
    """A bearer token bound to one tenant and one user.

    Only a salted hash of the secret is stored; the full token is shown once,
    at creation. ``prefix`` is the public, unique lookup part of the token.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    salt = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class NetworkMode(models.TextChoices):
    NONE = "none", "No network"
    BRIDGE = "bridge", "Bridge (outbound allowed)"


class ContainerRuntime(models.TextChoices):
    DEFAULT = "", "Engine default"
    RUNC = "runc", "runc"
    GVISOR = "runsc", "gVisor (runsc)"


def _default_warm_pool_size() -> int:
    return int(settings.DEVBENCH_WARM_POOL_SIZE)


def _default_warm_pool_max_age_s() -> int:
    return int(settings.DEVBENCH_WARM_POOL_MAX_AGE_S)


def _default_idle_timeout_s() -> int:
    return int(settings.DEVBENCH_IDLE_TIMEOUT_S)


class ScanSeverity(models.TextChoices):
    """Severities of image scan findings (Trivy's scale), lowest first."""

    LOW = "LOW", "Low"
    MEDIUM = "MEDIUM", "Medium"
    HIGH = "HIGH", "High"
    CRITICAL = "CRITICAL", "Critical"


class TenantPolicy(models.Model):
    """Per-tenant limits and rules. Services read it; admins edit it."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="policy")
    allowed_images = models.JSONField(
        default=list,
        blank=True,
        help_text='Image reference patterns (fnmatch), e.g. ["devbench/*", "python:3.11*"].',
    )
    require_digest = models.BooleanField(
        default=False, help_text="Only accept image references pinned by @sha256 digest."
    )
    default_image = models.CharField(max_length=255, default="devbench/busybox:latest")
    memory_limit_mb = models.PositiveIntegerField(default=512, validators=[MinValueValidator(16)])
    cpu_limit = models.DecimalField(
        max_digits=5, decimal_places=2, default=1, validators=[MinValueValidator(0.01)]
    )
    pids_limit = models.PositiveIntegerField(default=256, validators=[MinValueValidator(8)])
    network_mode = models.CharField(
        max_length=10, choices=NetworkMode.choices, default=NetworkMode.NONE
    )
    runtime = models.CharField(
        max_length=10,
        choices=ContainerRuntime.choices,
        default=ContainerRuntime.DEFAULT,
        blank=True,
        help_text=(
            "Container runtime of new workspaces. gVisor (runsc) runs them on its own "
            "kernel, without network; the node needs it installed (scripts/runsc-setup)."
        ),
    )
    max_workspaces = models.PositiveIntegerField(default=10)
    max_concurrent_execs = models.PositiveIntegerField(
        default=4, help_text="Per workspace.", validators=[MinValueValidator(1)]
    )
    default_ttl_s = models.PositiveIntegerField(default=3600)
    max_ttl_s = models.PositiveIntegerField(default=86400)
    max_file_size_bytes = models.PositiveBigIntegerField(default=128 * 1024 * 1024)
    exec_output_cap_bytes = models.PositiveBigIntegerField(default=16 * 1024 * 1024)
    max_snapshots = models.PositiveIntegerField(
        default=20, help_text="Snapshots the tenant may keep (forks make one each)."
    )
    max_snapshot_bytes = models.PositiveBigIntegerField(
        default=10 * 1024**3,
        help_text="Total size of the tenant's snapshots (the files each one adds to its image).",
    )
    node_labels = models.JSONField(
        default=dict,
        blank=True,
        help_text="Labels a node must carry to hold the tenant's workspaces, e.g. "
        '{"runtime": "gvisor"}.',
    )
    warm_pool_size = models.PositiveIntegerField(
        default=_default_warm_pool_size,
        help_text="Started, unassigned workspaces of the default image kept ready on each "
        "node the tenant may use (0: no pool); a spawn takes one instead of creating it.",
    )
    warm_pool_max_age_s = models.PositiveIntegerField(
        default=_default_warm_pool_max_age_s,
        validators=[MinValueValidator(60)],
        help_text="A pooled workspace older than this is replaced by a fresh one.",
    )
    idle_timeout_s = models.PositiveIntegerField(
        default=_default_idle_timeout_s,
        help_text="Pause (freeze) a workspace after this many seconds without exec, file, "
        "shell or attach activity; its next use resumes it (0: never).",
    )
    exec_retention_days = models.PositiveIntegerField(
        default=30,
        help_text="Finished execs and their output are deleted after this many days (0: kept).",
    )
    image_scan_block_severity = models.CharField(
        max_length=10,
        choices=ScanSeverity.choices,
        blank=True,
        default="",
        help_text="Refuse to spawn images whose scan report has a finding of this severity "
        "or higher (empty: scan reports never block).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tenant policies"

    def __str__(self) -> str:
        return f"policy of {self.tenant}"


class AuditEvent(models.Model):
    """One row per mutating action or denied request, written by services."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        DENIED = "denied"
        ERROR = "error"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="audit_events", null=True, blank=True
    )
    actor_kind = models.CharField(max_length=20)
    actor_id = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error_code = models.CharField(max_length=50, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome}"
