"""Web pages of workspaces: the list with the spawn form, one workspace, kill.

Thin like every interface: parse the form, call one service or selector,
render. Scopes are the services' business (a viewer's spawn is refused there);
the templates only hide what the actor's scopes would refuse anyway.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import parse_input
from core.pagination import page_from_query
from execution.selectors import exec_list
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from tenants.web import tenant_view, wants_json
from workspaces import selectors, services
from workspaces.environment_templates.selectors import template_list
from workspaces.models import SnapshotStatus, TemplateStatus, Workspace, WorkspaceStatus
from workspaces.schemas import WorkspaceSpawnIn
from workspaces.snapshots.selectors import snapshot_list

# The newest commands shown on a workspace's page.
RECENT_EXECS = 25
# Offered in the spawn form (seconds); only those within the policy's ceiling are shown.
TTL_CHOICES = [
    (15 * 60, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (8 * 3600, "8 hours"),
    (24 * 3600, "1 day"),
    (7 * 24 * 3600, "7 days"),
]


def _list_url(actor: Principal) -> str:
    return reverse("web:workspace_list", kwargs={"tenant": actor.tenant.slug})


def detail_url(actor: Principal, workspace: Workspace) -> str:
    return reverse(
        "web:workspace_detail",
        kwargs={"tenant": actor.tenant.slug, "ref": workspace.public_id},
    )


def _duration(seconds: int) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


@require_GET
@tenant_view
def workspace_list(request: HttpRequest, actor: Principal) -> HttpResponse:
    policy = tenant_policy_get(tenant=actor.tenant)
    page = selectors.workspace_page(actor=actor, page=page_from_query(request.GET))
    return render(
        request,
        "workspaces/list.html",
        {
            "workspaces": page.items,
            "page": page,
            "cursor": request.GET.get("cursor", ""),
            "snapshots": snapshot_list(actor=actor).filter(status=SnapshotStatus.READY)[:100],
            "templates": sorted(
                set(
                    template_list(actor=actor)
                    .filter(status=TemplateStatus.READY)
                    .values_list("name", flat=True)
                )
            ),
            "policy": policy,
            "default_ttl": _duration(min(policy.default_ttl_s, policy.max_ttl_s)),
            "ttl_choices": [(s, label) for s, label in TTL_CHOICES if s <= policy.max_ttl_s],
            # A fresh key per rendered form: a double submit spawns one workspace.
            "spawn_key": uuid.uuid4().hex,
        },
    )


@require_GET
@tenant_view
def workspace_rows(request: HttpRequest, actor: Principal) -> HttpResponse:
    """The rows of the list's page (same ``cursor``), for it to refresh statuses in place."""
    page = selectors.workspace_page(actor=actor, page=page_from_query(request.GET))
    return render(request, "workspaces/_rows.html", {"workspaces": page.items})


@require_POST
@tenant_view
def workspace_spawn(request: HttpRequest, actor: Principal) -> HttpResponse:
    form = request.POST
    persistent = form.get("persistent") == "on"
    snapshot = form.get("snapshot", "").strip() or None
    template = None if snapshot else form.get("template", "").strip() or None
    ttl = None if persistent else (form.get("ttl_s") or "").strip() or None
    # The same input model as REST and MCP (a form sends text: not strict).
    spawn = parse_input(
        WorkspaceSpawnIn,
        {
            # A chosen snapshot or template brings its own image: the image field is ignored.
            "image": None if snapshot or template else form.get("image", "").strip() or None,
            "snapshot": snapshot,
            "template": template,
            "alias": form.get("alias", "").strip() or None,
            "persistent": persistent,
            "ttl_s": ttl,
            "idempotency_key": form.get("idempotency_key") or None,
        },
        what="form",
        strict=False,
    )
    workspace = services.workspace_spawn(
        actor=actor,
        image=spawn.image,
        snapshot=spawn.snapshot,
        template=spawn.template,
        alias=spawn.alias,
        persistent=spawn.persistent,
        ttl_s=spawn.ttl_s,
        idempotency_key=spawn.idempotency_key,
        # The page shows it creating and refreshes until it runs (or fails).
        wait=False,
    )
    if workspace.warm:
        messages.success(
            request, f"Workspace {workspace} is ready (served warm from {workspace.image_ref})."
        )
    else:
        messages.success(
            request, f"Workspace {workspace} is being created from {workspace.image_ref}."
        )
    if wants_json(request):
        answer = {"id": workspace.public_id, "warm": bool(workspace.warm)}
        return JsonResponse({**answer, "redirect": _list_url(actor)}, status=202)
    return HttpResponseRedirect(_list_url(actor))


@require_GET
@tenant_view
def workspace_detail(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return render(
        request,
        "workspaces/detail.html",
        {
            "workspace": workspace,
            "tab": "commands",
            "execs": exec_list(actor=actor, workspace=workspace)[:RECENT_EXECS],
            "open_exec": request.GET.get("exec", ""),
        },
    )


@require_GET
@tenant_view
def workspace_shell(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return render(request, "workspaces/shell.html", {"workspace": workspace, "tab": "shell"})


@require_GET
@tenant_view
def workspace_status(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    """The workspace's state as JSON, polled by its page while it is being created."""
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return JsonResponse(
        {
            "id": workspace.public_id,
            "status": workspace.status,
            "status_message": workspace.status_message,
            "error_code": workspace.error_code,
            "progress": workspace.progress or None,
        }
    )


@require_POST
@tenant_view
def workspace_kill(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    workspace = services.workspace_kill(actor=actor, workspace=workspace)
    if workspace.status == WorkspaceStatus.REMOVED:
        messages.success(request, f"Workspace {workspace} was killed.")
    else:
        messages.warning(request, f"Workspace {workspace} is {workspace.status}.")
    return HttpResponseRedirect(_list_url(actor))


@require_POST
@tenant_view
def workspace_pause(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    workspace = services.workspace_pause(actor=actor, workspace=workspace)
    messages.success(request, f"Workspace {workspace} is paused; using it resumes it.")
    return HttpResponseRedirect(detail_url(actor, workspace))


@require_GET
@tenant_view
def workspace_stats(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    """One resource reading as JSON, polled by the workspace page's live chart."""
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    stats = services.workspace_stats(actor=actor, workspace=workspace)
    return JsonResponse(
        {
            "cpu_percent": stats.cpu_percent,
            "memory_used_bytes": stats.memory_used_bytes,
            "memory_limit_bytes": stats.memory_limit_bytes,
            "memory_percent": round(stats.memory_percent, 2),
            "pids": stats.pids,
            "read_at": stats.read_at,
        }
    )


@require_POST
@tenant_view
def workspace_stop(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    services.workspace_stop(actor=actor, workspace=workspace)
    messages.success(request, f"Workspace {workspace} was stopped; its files are kept.")
    return HttpResponseRedirect(detail_url(actor, workspace))


@require_POST
@tenant_view
def workspace_resume(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    workspace = services.workspace_resume(actor=actor, workspace=workspace)
    messages.success(request, f"Workspace {workspace} is running again.")
    return HttpResponseRedirect(detail_url(actor, workspace))


@require_POST
@tenant_view
def workspace_start(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    services.workspace_start(actor=actor, workspace=workspace)
    messages.success(request, f"Workspace {workspace} was started.")
    return HttpResponseRedirect(detail_url(actor, workspace))
