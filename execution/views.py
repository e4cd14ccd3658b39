"""Web pages' side of execs: start one from the command form, list recent ones, cancel.

The output itself reaches the browser over the exec websocket
(``/ws/execs/<id>/?after_seq=N``), which replays the stored backlog and then
streams live: these views only start, list and cancel.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import parse_input
from execution import selectors, services
from execution.errors import InvalidCmd, InvalidTimeout
from execution.models import Exec
from execution.schemas import ExecCommand, ExecPageOut
from tenants.principal import Principal
from tenants.web import back_url, tenant_view, wants_json
from workspaces.models import Workspace
from workspaces.selectors import workspace_get

# A command line typed in the page runs through the workspace's shell, like a terminal.
SHELL = "/bin/sh"
RECENT_EXECS = 25


def _exec_json(exec_: Exec) -> dict[str, object]:
    page = ExecPageOut.from_exec_page(exec_, command=command_text(exec_))
    return page.model_dump(mode="json")


def command_text(exec_: Exec) -> str:
    """What the user typed (for a shell command line), else the argv joined."""
    cmd = list(exec_.cmd)
    if len(cmd) == 3 and cmd[0] == SHELL and cmd[1] == "-c":
        return str(cmd[2])
    return " ".join(str(part) for part in cmd)


def _workspace_url(actor: Principal, workspace: Workspace) -> str:
    return reverse(
        "web:workspace_detail", kwargs={"tenant": actor.tenant.slug, "ref": workspace.public_id}
    )


def _timeout(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidTimeout("The timeout must be a whole number of seconds.") from None


@require_POST
@tenant_view
def exec_start(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    command = request.POST.get("command", "")
    if not command.strip():
        raise InvalidCmd("Type a command to run.")
    # The same input model as REST and MCP (a form sends text: not strict).
    args = parse_input(
        ExecCommand,
        {"cmd": [SHELL, "-c", command], "timeout_s": _timeout(request.POST.get("timeout_s"))},
        what="form",
        strict=False,
    )
    exec_ = services.exec_start(
        actor=actor, workspace=workspace, cmd=args.cmd, timeout_s=args.timeout_s
    )
    if wants_json(request):
        return JsonResponse(_exec_json(exec_), status=202)
    # Without scripts: the page opens with this exec's output.
    url = _workspace_url(actor, workspace)
    return HttpResponseRedirect(f"{url}?{urlencode({'exec': exec_.public_id})}")


@require_GET
@tenant_view
def exec_rows(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    """The workspace's recent execs alone, for its page to refresh them in place."""
    workspace = workspace_get(actor=actor, ref=ref)
    return render(
        request,
        "execution/_exec_rows.html",
        {
            "workspace": workspace,
            "execs": selectors.exec_list(actor=actor, workspace=workspace)[:RECENT_EXECS],
        },
    )


@require_POST
@tenant_view
def exec_cancel(request: HttpRequest, actor: Principal, exec_id: str) -> HttpResponse:
    exec_ = services.exec_cancel(actor=actor, exec_id=exec_id)
    if wants_json(request):
        return JsonResponse(_exec_json(exec_))
    messages.info(request, f"Exec {exec_.public_id} is {exec_.status}.")
    return HttpResponseRedirect(back_url(request, _workspace_url(actor, exec_.workspace)))
