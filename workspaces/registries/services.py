"""Registry credentials and pulls: images come onto the node that needs them.

A reference naming a registry host (``127.0.0.1:5000/team/tool:1``) that is
not on the node is pulled there, through the node's engine, with the tenant's
credentials for that host (else the installation's). Docker Hub references
are pulled only when credentials for ``docker.io`` are configured: no public
registry is assumed reachable. The tenant's allow-list and digest rule are
checked before any pull, exactly as for local images.
"""

from __future__ import annotations

from django.conf import settings

from tenants.audit import audited
from tenants.principal import Principal
from workspaces.images import DEFAULT_DOMAIN, ImageReference, image_forget
from workspaces.models import Registry
from workspaces.nodes import node_driver
from workspaces.registries.crypto import encrypt
from workspaces.registries.selectors import registry_auth, registry_for
from workspaces.runtime.base import ImageInfo


def registry_save(
    *, actor: Principal | None, registry: Registry, password: str | None = None
) -> Registry:
    """Save a registry row; ``password`` (when given) is stored encrypted. Audited without
    the password."""
    if password is not None:
        registry.password_encrypted = encrypt(password) if password else ""
    if actor is None:  # an installation-level row, saved by a superuser in the admin
        registry.save()
        return registry
    with audited(
        actor=actor,
        action="registry.save",
        target_type="registry",
        details={"host": registry.host, "username": registry.username},
    ) as audit:
        registry.save()
        audit.target_id = str(registry.pk)
    return registry


def image_pullable(*, reference: ImageReference, tenant_id: int | None) -> bool:
    if reference.domain != DEFAULT_DOMAIN:
        return True
    return registry_for(tenant_id=tenant_id, host=DEFAULT_DOMAIN) is not None


def image_pull(*, reference: ImageReference, tenant_id: int | None, node: str) -> ImageInfo:
    """Pull onto ``node`` with the credentials for the reference's host."""
    auth = registry_auth(registry_for(tenant_id=tenant_id, host=reference.domain))
    info = node_driver(node).image_pull(reference.canonical(), auth=auth)
    image_forget(reference, node=node)
    return info


def snapshot_registry() -> str:
    """The installation's registry for snapshots (host[:port]); empty: none."""
    return str(getattr(settings, "DEVBENCH_SNAPSHOT_REGISTRY", "") or "")
