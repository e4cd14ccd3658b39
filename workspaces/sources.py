"""Where a workspace's image comes from: a snapshot, a template or an image reference,
resolved to an image id on the workspace's node.

A spawn resolves it in the request without pulling (``pull=False``): an image that
must first come from a registry leaves the row's ``image_id`` empty, and the
provisioning task pulls it on the node, reporting its progress on the row
(``Workspace.progress``), which REST, MCP, the websocket and the web page show.
"""

from __future__ import annotations

from typing import Any

from tenants.models import TenantPolicy
from workspaces.environment_templates.services import template_image
from workspaces.errors import ImageNotAllowed
from workspaces.images import (
    allowed_image_patterns,
    image_check,
    image_reference_allowed,
    image_reference_parse,
)
from workspaces.models import Snapshot, Template
from workspaces.runtime.base import PullProgress, PullReporter
from workspaces.scanning import image_scan_check
from workspaces.snapshots.services import snapshot_image_on


def pulling(progress: PullProgress) -> dict[str, Any]:
    """``Workspace.progress`` while its image is pulled."""
    return {"phase": "pulling", **progress.as_dict()}


def _snapshot_base_allowed(*, policy: TenantPolicy, snapshot: Snapshot) -> None:
    base = image_reference_parse(snapshot.base_image_ref)
    patterns = allowed_image_patterns(policy)
    if not image_reference_allowed(base, patterns):
        raise ImageNotAllowed(
            f"Snapshot '{snapshot.public_id}' is of image '{base.familiar()}', which the tenant "
            "policy no longer allows.",
            image=base.familiar(),
            allowed_images=patterns,
        )


def workspace_image_id(
    *,
    policy: TenantPolicy,
    node: str,
    image: str | None,
    snapshot: Snapshot | None,
    template: Template | None,
    pull: bool = True,
    progress: PullReporter | None = None,
) -> str:
    """The id of the image the workspace runs on ``node``, after the tenant's policy
    checks (a snapshot's base image must still be allowed). ``pull=False``: PullNeeded
    when it has to be pulled first."""
    if snapshot is not None:
        _snapshot_base_allowed(policy=policy, snapshot=snapshot)
        info = snapshot_image_on(snapshot=snapshot, node=node, pull=pull, progress=progress)
        # What was installed in the workspace is in this image: its own report decides.
        image_scan_check(policy=policy, image=info, name=snapshot.image_ref)
        return info.id
    if template is not None:
        return template_image(
            policy=policy, template=template, node=node, pull=pull, progress=progress
        )
    return image_check(policy=policy, image=image, node=node, pull=pull, progress=progress).info.id
