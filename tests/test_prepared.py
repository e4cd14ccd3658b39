"""core.prepared.PreparedGet: the same rows as the ORM's get(), with SQL built once."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Model

from core.pagination import PageQuery, paginate
from core.prepared import PreparedGet
from tests.factories import WorkspaceFactory
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.selectors import workspace_get, workspace_list, workspace_page

pytestmark = pytest.mark.django_db


def _fields(row: Model) -> dict[str, Any]:
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}


def test_rows_equal_the_orms_with_converted_values(tenant: Any) -> None:
    workspace = WorkspaceFactory(
        tenant=tenant, labels={"team": "a", "n": [1, 2]}, limits={"cpus": 1.5}
    )
    lookup = PreparedGet(Workspace, "tenant_id", "public_id")
    for _ in range(2):  # compiled on the first call, reused on the second
        row = lookup.get(tenant_id=tenant.pk, public_id=workspace.public_id)
        assert row is not None
        assert _fields(row) == _fields(Workspace.objects.get(pk=workspace.pk))
        assert row.labels == {"team": "a", "n": [1, 2]}  # JSON decoded, not text
        assert row._state.adding is False and row._state.db == "default"


def test_missing_or_another_tenants_row_is_none(tenant: Any, other_tenant: Any) -> None:
    theirs = WorkspaceFactory(tenant=other_tenant)
    lookup = PreparedGet(Workspace, "tenant_id", "public_id")
    assert lookup.get(tenant_id=tenant.pk, public_id=theirs.public_id) is None
    assert lookup.get(tenant_id=tenant.pk, public_id="ws_missing") is None


def test_fixed_conditions_are_compiled_in(tenant: Any) -> None:
    WorkspaceFactory(tenant=tenant, alias="old", status=WorkspaceStatus.REMOVED)
    live = WorkspaceFactory(tenant=tenant, alias="live")
    lookup = PreparedGet(
        Workspace, "tenant_id", "alias", refine=lambda qs: qs.exclude(status="removed")
    )
    assert lookup.get(tenant_id=tenant.pk, alias="old") is None
    found = lookup.get(tenant_id=tenant.pk, alias="live")
    assert found is not None and found.pk == live.pk


def test_two_rows_are_refused(tenant: Any) -> None:
    WorkspaceFactory(tenant=tenant, status=WorkspaceStatus.STOPPED)
    WorkspaceFactory(tenant=tenant, status=WorkspaceStatus.STOPPED)
    lookup = PreparedGet(Workspace, "tenant_id", "status")
    with pytest.raises(Workspace.MultipleObjectsReturned):
        lookup.get(tenant_id=tenant.pk, status=WorkspaceStatus.STOPPED)


def test_workspace_get_carries_the_actors_tenant(actor: Any, tenant: Any) -> None:
    workspace = WorkspaceFactory(tenant=tenant, alias="named")
    by_id = workspace_get(actor=actor, ref=workspace.public_id)
    by_alias = workspace_get(actor=actor, ref="named")
    assert by_id.pk == by_alias.pk == workspace.pk
    assert by_id.tenant is actor.tenant


def test_select_related_rows_are_attached_without_a_query(
    tenant: Any, django_assert_num_queries: Any
) -> None:
    from execution.models import Exec

    workspace = WorkspaceFactory(tenant=tenant)
    exec_ = Exec.objects.create(tenant=tenant, workspace=workspace, cmd=["true"])
    lookup = PreparedGet(
        Exec, "tenant_id", "public_id", refine=lambda qs: qs.select_related("workspace")
    )
    lookup.get(tenant_id=tenant.pk, public_id=exec_.public_id)  # compiles
    with django_assert_num_queries(1):
        found = lookup.get(tenant_id=tenant.pk, public_id=exec_.public_id)
        assert found is not None
        related = found.workspace
    assert _fields(related) == _fields(Workspace.objects.get(pk=workspace.pk))
    assert _fields(found) == _fields(Exec.objects.get(pk=exec_.pk))


@pytest.mark.django_db(transaction=True)
def test_a_locking_lookup_locks_its_row_and_brings_the_related_ones(tenant: Any) -> None:
    """``select_for_update`` in ``refine`` (the exec start's workspace lock): the row is
    locked until the transaction ends, the related rows come with it, unlocked."""
    import threading

    from django.db import connection, transaction

    workspace = WorkspaceFactory(tenant=tenant)
    lookup = PreparedGet(
        Workspace,
        "id",
        refine=lambda qs: qs.select_related("tenant").select_for_update(of=("self",)),
    )

    def try_lock_from_another_connection(table: str, pk: int) -> str:
        result: list[str] = []

        def attempt() -> None:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    sql = f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT"  # noqa: S608
                    cursor.execute(sql, [pk])
                result.append("free")
            except Exception as exc:
                result.append(type(exc).__name__)
            finally:
                connection.close()

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join(30)
        return result[0]

    for _ in range(2):  # compiled on the first call, reused on the second
        with transaction.atomic():
            locked = lookup.get(id=workspace.pk)
            assert locked is not None
            assert _fields(locked) == _fields(Workspace.objects.get(pk=workspace.pk))
            assert _fields(locked.tenant) == _fields(type(tenant).objects.get(pk=tenant.pk))
            assert try_lock_from_another_connection("workspaces_workspace", workspace.pk) != "free"
            assert try_lock_from_another_connection("tenants_tenant", tenant.pk) == "free"
        assert try_lock_from_another_connection("workspaces_workspace", workspace.pk) == "free"
    with transaction.atomic():
        assert lookup.get(id=workspace.pk + 1000) is None


def test_workspace_pages_equal_the_orms_in_every_shape(
    actor: Any, tenant: Any, other_tenant: Any
) -> None:
    """The compiled list (``workspace_page``) returns what paginating ``workspace_list``
    through the ORM returns, page after page, for every filter combination."""
    from workspaces.models import Snapshot

    snapshot = Snapshot.objects.create(tenant=tenant, name="s", status="ready")
    WorkspaceFactory.create_batch(3, tenant=tenant, status=WorkspaceStatus.STOPPED)
    WorkspaceFactory.create_batch(2, tenant=tenant, status=WorkspaceStatus.REMOVED)
    WorkspaceFactory(tenant=tenant, alias="named", snapshot=snapshot)
    WorkspaceFactory(tenant=tenant, alias="named", status=WorkspaceStatus.REMOVED)
    WorkspaceFactory.create_batch(2, tenant=other_tenant)
    shapes: list[dict[str, Any]] = [
        {},
        {"include_removed": True},
        {"status": WorkspaceStatus.STOPPED},
        {"status": WorkspaceStatus.REMOVED, "include_removed": True},
        {"alias": "named"},
        {"alias": "named", "include_removed": True},
        {"alias": "named", "status": WorkspaceStatus.REMOVED},
    ]
    for shape in shapes:
        expected = paginate(
            workspace_list(actor=actor, **shape),
            page=PageQuery(limit=100, cursor=None),
            scope="orm",
        ).items
        seen: list[Workspace] = []
        cursor = None
        while True:  # two rows a page: the first page and the keyset pages after it
            page = workspace_page(actor=actor, page=PageQuery(limit=2, cursor=cursor), **shape)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [_fields(w) for w in seen] == [_fields(w) for w in expected], shape
        assert all(w.tenant is actor.tenant for w in seen)
    # The snapshot comes with its row (select_related), the tenant from the actor.
    (named,) = workspace_page(
        actor=actor, page=PageQuery(limit=50, cursor=None), alias="named"
    ).items
    assert named.snapshot is not None and named.snapshot.public_id == snapshot.public_id
