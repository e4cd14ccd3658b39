"""Registry credentials and pulls: images come onto the node that needs them.

A reference naming a registry host (``127.0.0.1:5000/team/tool:1``) that is
not on the node is pulled there, through the node's engine, with the tenant's
credentials for that host (else the installation's). Docker Hub references
are pulled only when credentials for ``docker.io`` are configured: no public
registry is assumed reachable. The tenant's allow-list and digest rule are
checked before any pull, exactly as for local images.
"""

from __future__ import annotations

import logging

from django.conf import settings

from core.errors import DevBenchError, ImageNotFound
from tenants.audit import audited
from tenants.principal import Principal
from workspaces.images import DEFAULT_DOMAIN, ImageReference, PullNeeded, image_forget
from workspaces.models import Node, NodeState, Registry
from workspaces.nodes import node_driver
from workspaces.registries.client import manifest_delete
from workspaces.registries.crypto import encrypt
from workspaces.registries.selectors import registry_auth, registry_for
from workspaces.runtime.base import ImageInfo, PullReporter

logger = logging.getLogger(__name__)


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


def image_pull(
    *,
    reference: ImageReference,
    tenant_id: int | None,
    node: str,
    progress: PullReporter | None = None,
) -> ImageInfo:
    """Pull onto ``node`` with the credentials for the reference's host."""
    auth = registry_auth(registry_for(tenant_id=tenant_id, host=reference.domain))
    info = node_driver(node).image_pull(reference.canonical(), auth=auth, progress=progress)
    image_forget(reference, node=node)
    return info


def snapshot_registry() -> str:
    """The installation's registry for snapshots (host[:port]); empty: none."""
    return str(getattr(settings, "DEVBENCH_SNAPSHOT_REGISTRY", "") or "")


def template_registry() -> str:
    """The installation's registry for built templates (host[:port]); empty: none."""
    return str(getattr(settings, "DEVBENCH_TEMPLATE_REGISTRY", "") or "")


def registry_image_push(*, node: str, source: str, repository: str, tag: str, host: str) -> str:
    """Push a node's local image to ``host/repository:tag`` with the installation's
    credentials for ``host``; returns ``host/repository@sha256:…`` (what any node pulls)."""
    remote = f"{host}/{repository}"
    auth = registry_auth(registry_for(tenant_id=None, host=host))
    digest = node_driver(node).image_push(source, f"{remote}:{tag}", auth=auth)
    return f"{remote}@{digest}"


def registry_image_on(
    *,
    node: str,
    image_id: str,
    registry_ref: str,
    pull: bool = True,
    progress: PullReporter | None = None,
) -> ImageInfo:
    """The image ``image_id`` on ``node``, pulled from ``registry_ref`` (pushed with the
    installation's credentials) when it is not there yet: the registry keeps the image's
    config, so the id is the same on every node. ImageNotFound without a registry copy;
    PullNeeded instead of pulling with ``pull=False``."""
    driver = node_driver(node)
    try:
        return driver.image_inspect(image_id)
    except ImageNotFound:
        if not registry_ref:
            raise
    if not pull:
        raise PullNeeded(registry_ref)
    host = registry_ref.split("/", 1)[0]
    auth = registry_auth(registry_for(tenant_id=None, host=host))
    driver.image_pull(registry_ref, auth=auth, progress=progress)
    return driver.image_inspect(image_id)


def registry_image_delete(*, registry_ref: str) -> bool:
    """Delete a pushed snapshot or template image (``host/repository@sha256:…``) from the
    registry, with the installation's credentials for its host (the ones it was pushed
    with). False: the registry no longer had it. Failures raise (``registry_*`` codes)."""
    host = registry_ref.split("/", 1)[0]
    auth = registry_auth(registry_for(tenant_id=None, host=host))
    return manifest_delete(registry_ref, auth=auth)


def image_copies_remove(*, registry_ref: str, except_node: str) -> None:
    """Remove the copies other nodes pulled of a registry image (best effort: a node that
    is down keeps its copy until it is removed there; garbage collection does not know it
    either, so this is logged)."""
    for node in Node.objects.exclude(name=except_node).exclude(state=NodeState.DOWN):
        try:
            node_driver(node.name).image_remove(registry_ref)
        except DevBenchError as exc:
            logger.warning(
                "could not remove %s from node %s: %s", registry_ref, node.name, exc.code
            )
