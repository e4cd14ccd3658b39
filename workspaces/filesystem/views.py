"""Web pages of a workspace's files: browse, view, download, upload, mkdir, delete.

Every operation goes through the ``fs_*`` services (path rules, symlink
confinement, size limits, audit); these views only parse forms and render.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from tenants.web import tenant_view
from workspaces.filesystem import services
from workspaces.filesystem.errors import FileRequired, FormPathNotFound, InvalidPath, PathNotFound
from workspaces.filesystem.paths import ROOT
from workspaces.filesystem.responses import archive_response, file_response
from workspaces.models import Workspace
from workspaces.selectors import workspace_get

# A file page shows at most this much of a file; the rest is a download away.
PREVIEW_BYTES = 512 * 1024


def files_url(actor: Principal, workspace: Workspace, path: str = ROOT) -> str:
    url = reverse(
        "web:workspace_files", kwargs={"tenant": actor.tenant.slug, "ref": workspace.public_id}
    )
    return url if path == ROOT else f"{url}?{urlencode({'path': path})}"


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path) of each directory from the root down to ``path``."""
    crumbs = [(ROOT, ROOT)]
    relative = path[len(ROOT) :].strip("/")
    current = ROOT
    for part in relative.split("/") if relative else []:
        current = f"{current}/{part}"
        crumbs.append((part, current))
    return crumbs


def _path_field(request: HttpRequest, name: str = "path") -> str:
    value = (request.POST if request.method == "POST" else request.GET).get(name, "")
    return value or ROOT


@contextmanager
def _form_paths() -> Iterator[None]:
    """A missing path typed in (or posted by) a form is a message on the form's page,
    not a 404 page: only what the URL names (tenant, workspace) is a page that is not there."""
    try:
        yield
    except PathNotFound as exc:
        raise FormPathNotFound(exc) from exc


@require_GET
@tenant_view
def files_browse(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    listing = services.fs_list(
        actor=actor,
        workspace=workspace,
        path=_path_field(request),
        cursor=request.GET.get("cursor") or None,
    )
    entries = sorted(listing.items, key=lambda e: (not e.is_dir, e.name.lower()))
    return render(
        request,
        "workspaces/files.html",
        {
            "workspace": workspace,
            "tab": "files",
            "listing": listing,
            "entries": entries,
            "crumbs": _crumbs(listing.path),
            "parent": posixpath.dirname(listing.path) if listing.path != ROOT else None,
            "max_upload": tenant_policy_get(tenant=actor.tenant).max_file_size_bytes,
        },
    )


def _preview_text(content: bytes, *, cut: bool) -> str | None:
    """The content as text, or None when it is not UTF-8 text (binary)."""
    if b"\x00" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The preview may end inside a character: drop that incomplete tail only.
        if cut and exc.start >= len(content) - 3:
            return content[: exc.start].decode("utf-8", errors="replace")
        return None


@require_GET
@tenant_view
def file_view(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    result = services.fs_read(
        actor=actor, workspace=workspace, path=_path_field(request), length=PREVIEW_BYTES
    )
    cut = result.length < result.size
    return render(
        request,
        "workspaces/file_view.html",
        {
            "workspace": workspace,
            "tab": "files",
            "file": result,
            "text": _preview_text(result.content, cut=cut),
            "cut": cut,
            "name": posixpath.basename(result.path),
            "crumbs": _crumbs(posixpath.dirname(result.path)),
            "parent": posixpath.dirname(result.path),
        },
    )


@require_GET
@tenant_view
def file_download(request: HttpRequest, actor: Principal, ref: str) -> HttpResponseBase:
    workspace = workspace_get(actor=actor, ref=ref)
    stream = services.fs_read_stream(actor=actor, workspace=workspace, path=_path_field(request))
    return file_response(stream, attachment=True)


@require_GET
@tenant_view
def archive_download(request: HttpRequest, actor: Principal, ref: str) -> HttpResponseBase:
    """A directory (or file) as a tar stream."""
    workspace = workspace_get(actor=actor, ref=ref)
    download = services.fs_download_archive(
        actor=actor, workspace=workspace, path=_path_field(request)
    )
    return archive_response(download)


@require_POST
@tenant_view
def file_upload(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    directory = _path_field(request, "dir")
    uploaded = request.FILES.get("file")
    if uploaded is None or not uploaded.name:
        raise FileRequired("Choose a file to upload.")
    # Browsers send a base name; anything else is not a place to write to.
    name = posixpath.basename(uploaded.name.replace("\\", "/"))
    with _form_paths():
        result = services.fs_write(
            actor=actor,
            workspace=workspace,
            path=posixpath.join(directory, name),
            content=uploaded.chunks(),
        )
    verb = "Uploaded" if result.created else "Replaced"
    messages.success(request, f"{verb} {result.path} ({result.size} bytes).")
    return HttpResponseRedirect(files_url(actor, workspace, posixpath.dirname(result.path)))


@require_POST
@tenant_view
def dir_make(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    name = request.POST.get("name", "").strip()
    if not name:
        raise InvalidPath("Name the new folder.")
    with _form_paths():
        result = services.fs_mkdir(
            actor=actor, workspace=workspace, path=posixpath.join(_path_field(request, "dir"), name)
        )
    messages.success(request, f"Created the folder {result.path}.")
    return HttpResponseRedirect(files_url(actor, workspace, posixpath.dirname(result.path)))


@require_POST
@tenant_view
def path_delete(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    workspace = workspace_get(actor=actor, ref=ref)
    with _form_paths():
        result = services.fs_delete(
            actor=actor,
            workspace=workspace,
            path=_path_field(request),
            recursive=request.POST.get("recursive") == "on",
        )
    messages.success(request, f"Deleted {result.path}.")
    return HttpResponseRedirect(files_url(actor, workspace, posixpath.dirname(result.path)))
