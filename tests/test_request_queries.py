"""The control reads an agent repeats most cost a fixed, small number of queries.

A verified token is remembered (``tenants.token_cache``), so once warm a read
pays only for the rows it returns. These bounds are the minimum today: a new
query on one of these paths is a regression to justify, not a detail.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from execution.models import Exec, ExecChunk, ExecStatus, Stream
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def warm(api: Client) -> Client:
    assert api.get("/api/v1/me").status_code == 200  # the token is now verified and remembered
    return api


@pytest.fixture
def workspace(tenant: Any) -> Any:
    return WorkspaceFactory(tenant=tenant, container_id="c0ffee")


@pytest.fixture
def finished_exec(tenant: Any, workspace: Any) -> Exec:
    exec_ = Exec.objects.create(
        tenant=tenant,
        workspace=workspace,
        cmd=["echo", "hi"],
        status=ExecStatus.COMPLETED,
        exit_code=0,
        last_seq=2,
    )
    ExecChunk.objects.create(exec=exec_, seq=1, stream=Stream.STDOUT, data=b"hi\n")
    ExecChunk.objects.create(exec=exec_, seq=2, stream=Stream.STDERR, data=b"warn\n")
    return exec_


def test_me_needs_no_query(warm: Client, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(0):
        assert warm.get("/api/v1/me").status_code == 200


def test_workspace_get_is_one_query(
    warm: Client, workspace: Any, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(1):
        response = warm.get(f"/api/v1/workspaces/{workspace.public_id}")
    assert response.status_code == 200 and response.json()["id"] == workspace.public_id


def test_workspace_list_is_one_page_query(
    warm: Client, tenant: Any, django_assert_max_num_queries: Any
) -> None:
    WorkspaceFactory.create_batch(5, tenant=tenant)
    with django_assert_max_num_queries(1):  # keyset: the page and "more?" in one SELECT
        response = warm.get("/api/v1/workspaces", {"limit": 3})
    assert response.status_code == 200 and len(response.json()["items"]) == 3
    with django_assert_max_num_queries(1):
        rest = warm.get("/api/v1/workspaces", {"cursor": response.json()["next_cursor"]})
    assert len(rest.json()["items"]) == 2 and rest.json()["next_cursor"] is None


def test_exec_poll_is_the_row_and_its_output(
    warm: Client, finished_exec: Exec, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(2):
        response = warm.get(f"/api/v1/execs/{finished_exec.public_id}")
    body = response.json()
    assert response.status_code == 200 and body["complete"] is True
    assert [m["data"] for m in body["messages"]] == ["hi\n", "warn\n"]


def test_exec_poll_of_a_finished_exec_read_to_its_end_is_one_query(
    warm: Client, finished_exec: Exec, django_assert_max_num_queries: Any
) -> None:
    # Its last_seq says no chunk follows: only the row is read.
    with django_assert_max_num_queries(1):
        response = warm.get(f"/api/v1/execs/{finished_exec.public_id}?after_seq=2")
    assert response.json()["messages"] == [] and response.json()["complete"] is True
    with django_assert_max_num_queries(2):  # one chunk left: the row and that chunk
        response = warm.get(f"/api/v1/execs/{finished_exec.public_id}?after_seq=1")
    assert [m["data"] for m in response.json()["messages"]] == ["warn\n"]


def test_exec_poll_of_a_running_exec_reads_its_chunks(
    warm: Client, finished_exec: Exec, django_assert_max_num_queries: Any
) -> None:
    # Running: last_seq is not kept up to date while output is stored, so chunks are read.
    Exec.objects.filter(pk=finished_exec.pk).update(
        status=ExecStatus.RUNNING, exit_code=None, last_seq=0
    )
    with django_assert_max_num_queries(2):
        response = warm.get(f"/api/v1/execs/{finished_exec.public_id}?after_seq=1")
    body = response.json()
    assert [m["data"] for m in body["messages"]] == ["warn\n"] and body["complete"] is False
