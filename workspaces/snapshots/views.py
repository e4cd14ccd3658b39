"""Web pages of snapshots: a workspace's snapshots tab (take, fork, spawn from, delete)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import parse_input
from tenants.principal import Principal
from tenants.web import tenant_view
from workspaces import selectors as workspace_selectors
from workspaces.models import Workspace
from workspaces.services import workspace_spawn
from workspaces.snapshots import selectors, services
from workspaces.snapshots.schemas import ForkBody, SnapshotCreateBody


def _tab_url(actor: Principal, workspace: Workspace) -> str:
    return reverse(
        "web:workspace_snapshots",
        kwargs={"tenant": actor.tenant.slug, "ref": workspace.public_id},
    )


def _detail_url(actor: Principal, workspace: Workspace) -> str:
    return reverse(
        "web:workspace_detail", kwargs={"tenant": actor.tenant.slug, "ref": workspace.public_id}
    )


@require_GET
@tenant_view
def workspace_snapshots(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_selectors.workspace_get(actor=actor, ref=ref)
    return render(
        request,
        "workspaces/snapshots.html",
        {
            "workspace": workspace,
            "tab": "snapshots",
            "snapshots": selectors.snapshot_list(actor=actor, workspace=workspace.public_id),
        },
    )


@require_POST
@tenant_view
def snapshot_take(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_selectors.workspace_get(actor=actor, ref=ref)
    # The same input models as REST and MCP (a form sends text: not strict).
    form = parse_input(
        SnapshotCreateBody,
        {
            "name": request.POST.get("name", "").strip(),
            "description": request.POST.get("description", "").strip(),
        },
        what="form",
        strict=False,
    )
    snapshot = services.snapshot_create(
        actor=actor, workspace=workspace, name=form.name, description=form.description
    )
    messages.success(request, f"Snapshot {snapshot.name} ({snapshot.public_id}) was taken.")
    return HttpResponseRedirect(_tab_url(actor, workspace))


@require_POST
@tenant_view
def workspace_fork(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_selectors.workspace_get(actor=actor, ref=ref)
    form = parse_input(
        ForkBody,
        {"alias": request.POST.get("alias", "").strip() or None},
        what="form",
        strict=False,
    )
    forked, snapshot = services.workspace_fork(
        actor=actor,
        workspace=workspace,
        alias=form.alias,
        wait=False,  # its page shows it creating and refreshes until it runs
    )
    messages.success(request, f"Workspace {forked} is being created from {snapshot.public_id}.")
    return HttpResponseRedirect(_detail_url(actor, forked))


@require_POST
@tenant_view
def snapshot_spawn(request: HttpRequest, actor: Principal, snapshot_id: str) -> HttpResponse:
    workspace = workspace_spawn(actor=actor, snapshot=snapshot_id, wait=False)
    messages.success(request, f"Workspace {workspace} is being created from {snapshot_id}.")
    return HttpResponseRedirect(_detail_url(actor, workspace))


@require_POST
@tenant_view
def snapshot_delete(request: HttpRequest, actor: Principal, snapshot_id: str) -> HttpResponse:
    snapshot = selectors.snapshot_get(actor=actor, ref=snapshot_id)
    services.snapshot_delete(actor=actor, snapshot=snapshot)
    messages.success(request, f"Snapshot {snapshot.name} ({snapshot_id}) was deleted.")
    back = reverse("web:workspace_list", kwargs={"tenant": actor.tenant.slug})
    source = snapshot.source_workspace_public_id
    if source:
        back = reverse(
            "web:workspace_snapshots", kwargs={"tenant": actor.tenant.slug, "ref": source}
        )
    return HttpResponseRedirect(back)
