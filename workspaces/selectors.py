"""Tenant-scoped reads of workspaces. Another tenant's workspace is NotFound."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from core.pagination import Page, PageQuery, newest_first, paginate_with
from core.prepared import PreparedGet, PreparedList
from core.validation import escape_unstorable, is_line
from tenants.principal import Principal
from tenants.selectors import tenant_ids_managed_by
from workspaces.errors import WorkspaceNotFound, WorkspaceNotRunning
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.nodes import WorkspaceUnavailable


def workspace_list(
    *,
    actor: Principal,
    include_removed: bool = False,
    status: str | None = None,
    alias: str | None = None,
) -> QuerySet[Workspace]:
    """The actor's tenant's workspaces, newest first; removed ones only when asked."""
    actor.require_scope("read")
    qs = Workspace.objects.select_related("tenant", "snapshot")
    return _listed(
        qs, tenant_id=actor.tenant.pk, status=status, include_removed=include_removed, alias=alias
    )


def _listed(
    qs: QuerySet[Workspace],
    *,
    tenant_id: Any,
    status: Any | None,
    include_removed: bool,
    alias: Any | None,
) -> QuerySet[Workspace]:
    """The conditions of a listing (values or ``core.prepared`` placeholders)."""
    qs = qs.filter(tenant_id=tenant_id)
    if status is not None:
        qs = qs.filter(status=status)
    elif not include_removed:
        qs = qs.exclude(status=WorkspaceStatus.REMOVED)
    if alias is not None:
        qs = qs.filter(alias=alias)
    return qs


def workspace_page(
    *,
    actor: Principal,
    page: PageQuery,
    include_removed: bool = False,
    status: str | None = None,
    alias: str | None = None,
) -> Page[Workspace]:
    """One page of :func:`workspace_list` (the list contract of ``core.pagination``)."""
    actor.require_scope("read")
    # Listed as often as a workspace is read: its query is compiled once per shape.
    shape = (status is not None, include_removed and status is None, alias is not None)
    values: dict[str, Any] = {"tenant_id": actor.tenant.pk}
    if status is not None:
        values["status"] = status
    if alias is not None:
        values["alias"] = alias

    def fetch(after: tuple[datetime, int] | None, count: int) -> list[Workspace]:
        if after is None:
            return _page_query(*shape, after=False).rows(limit=count, **values)
        created_at, pk = after
        query = _page_query(*shape, after=True)
        return query.rows(limit=count, created_at=created_at, id=pk, **values)

    result = paginate_with(fetch, page=page, scope=f"workspace_list:{actor.tenant.pk}")
    for workspace in result.items:
        workspace.tenant = actor.tenant  # the query filtered on it; no join for it
    return result


@functools.cache
def _page_query(
    by_status: bool, include_removed: bool, by_alias: bool, *, after: bool
) -> PreparedList[Workspace]:
    """The query of one shape of :func:`workspace_page` (the same conditions as
    :func:`workspace_list`, newest first, after a keyset position or not)."""
    fields = ["tenant_id"]
    fields += ["status"] if by_status else []
    fields += ["alias"] if by_alias else []
    fields += ["created_at", "id"] if after else []

    def build(qs: QuerySet[Workspace], value: dict[str, Any]) -> QuerySet[Workspace]:
        qs = _listed(
            qs.select_related("snapshot"),
            tenant_id=value["tenant_id"],
            status=value.get("status"),
            include_removed=include_removed,
            alias=value.get("alias"),
        )
        return newest_first(qs, after=(value["created_at"], value["id"]) if after else None)

    return PreparedList(Workspace, *fields, build=build)


def workspace_get(*, actor: Principal, ref: str) -> Workspace:
    """By public id (``ws_…``) or by alias of a live workspace, inside the actor's tenant."""
    actor.require_scope("read")
    if not is_line(ref, max_length=63):  # no workspace has such a name (from a web URL, say)
        raise WorkspaceNotFound(escape_unstorable(ref))
    # Both lookups are unique (public id; alias of a live workspace), compiled once.
    if ref.startswith("ws_"):
        workspace = _BY_PUBLIC_ID.get(tenant_id=actor.tenant.pk, public_id=ref)
    else:
        workspace = _BY_LIVE_ALIAS.get(tenant_id=actor.tenant.pk, alias=ref)
    if workspace is None:
        # The same error whether the workspace is missing or another tenant's: no leak.
        raise WorkspaceNotFound(ref)
    workspace.tenant = actor.tenant  # the lookup proved it; no join for it
    return workspace


_BY_PUBLIC_ID = PreparedGet(Workspace, "tenant_id", "public_id")
_BY_LIVE_ALIAS = PreparedGet(
    Workspace,
    "tenant_id",
    "alias",
    refine=lambda qs: qs.exclude(status=WorkspaceStatus.REMOVED),
)


def workspace_require_own(*, actor: Principal, workspace: Workspace) -> None:
    """``workspace_not_found`` unless the workspace is the actor's tenant's.

    For services handed a row (not a ref): a row of another tenant answers exactly
    as a missing one does.
    """
    if workspace.tenant_id != actor.tenant.pk:
        raise WorkspaceNotFound(workspace.public_id)


def workspace_require_running(*, workspace: Workspace) -> None:
    """Raise ``workspace_not_running`` unless the workspace can run commands and file calls
    (``workspace_unavailable``, 503, while its node is down)."""
    if workspace.status == WorkspaceStatus.UNAVAILABLE:
        raise WorkspaceUnavailable(
            workspace.status_message
            or f"Workspace '{workspace}' is unavailable: its node is down.",
            extra={"workspace_id": workspace.public_id, "node": workspace.node},
        )
    if workspace.status != WorkspaceStatus.RUNNING or not workspace.container_id:
        raise WorkspaceNotRunning(
            f"Workspace '{workspace}' is {workspace.status}, not running.",
            workspace_id=workspace.public_id,
            status=workspace.status,
        )


def workspace_list_managed(*, user: Any) -> QuerySet[Workspace]:
    """For the admin: workspaces of the tenants the user administers (all for superusers)."""
    ids = tenant_ids_managed_by(user=user)
    qs = Workspace.objects.select_related("tenant", "created_by")
    return qs if ids is None else qs.filter(tenant_id__in=ids)
