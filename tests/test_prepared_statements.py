"""PostgreSQL keeps a statement a connection repeats prepared (no planning each time),
and a prepared statement still reads the rows as they are now."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from tests.factories import WorkspaceFactory
from workspaces.models import Workspace, WorkspaceStatus

pytestmark = pytest.mark.django_db


def _prepared_statements(fragment: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall() if fragment in statement]


def _status(public_id: str) -> str:
    # A query of this test's own (no other test runs it on this connection first).
    rows = Workspace.objects.filter(public_id=public_id, limits__isnull=False)
    return str(rows.values_list("status", flat=True)[0])


def test_a_query_repeated_on_a_connection_is_kept_prepared(tenant: Any) -> None:
    workspace = WorkspaceFactory(tenant=tenant, status=WorkspaceStatus.RUNNING)
    fragment = '"limits" IS NOT NULL'
    for _ in range(4):
        assert _status(workspace.public_id) == WorkspaceStatus.RUNNING
    assert _prepared_statements(fragment) == []  # not before its fifth run
    for _ in range(2):
        assert _status(workspace.public_id) == WorkspaceStatus.RUNNING
    [statement] = _prepared_statements(fragment)
    assert "$1" in statement  # the parameter is bound by the server, not spelled out

    Workspace.objects.filter(pk=workspace.pk).update(status=WorkspaceStatus.STOPPED)
    assert _status(workspace.public_id) == WorkspaceStatus.STOPPED
    other = WorkspaceFactory(tenant=tenant, status=WorkspaceStatus.PAUSED)
    assert _status(other.public_id) == WorkspaceStatus.PAUSED
    assert len(_prepared_statements(fragment)) == 1  # the same statement served both
