"""Stored output is compressed with lz4 where PostgreSQL has it (migration 0002); the
exec and chunk tables carry no index another one already covers (migration 0003); an
exec or workspace is found by one index on (tenant, public_id) (migrations
execution/0004, workspaces/0011)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from execution.models import Exec, ExecChunk
from execution.selectors import exec_get, exec_messages_after
from tenants.principal import system_principal
from tests.factories import ExecFactory, TenantFactory, WorkspaceFactory
from workspaces.models import Workspace


@pytest.mark.django_db
def test_chunk_data_is_compressed_with_lz4(tenant: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        assert cursor.fetchone() == (True,)  # Debian 12's PostgreSQL 15 is built with lz4
        exec_ = ExecFactory(workspace__tenant=tenant)
        data = b"0123456789abcdefghijklmnopqrstuvwxyz\n" * 2000  # compressible, stored out of line
        ExecChunk.objects.create(exec=exec_, seq=1, stream=1, data=data)
        table = ExecChunk._meta.db_table
        sql = f"SELECT pg_column_compression(data) FROM {table} WHERE exec_id = %s"  # noqa: S608
        cursor.execute(sql, [exec_.pk])
        assert cursor.fetchone() == ("lz4",)
    assert bytes(ExecChunk.objects.get(exec=exec_).data) == data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "column", "covering"),
    [
        (Exec, "workspace_id", ["workspace_id", "status"]),
        (ExecChunk, "exec_id", ["exec_id", "seq"]),
        (Exec, "tenant_id", ["tenant_id", "public_id"]),
        (Workspace, "tenant_id", ["tenant_id", "public_id"]),
    ],
)
def test_no_index_of_a_column_another_index_leads_with(
    model: Any, column: str, covering: list[str]
) -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexed = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]
    assert [column] not in indexed
    assert covering in indexed
    # The foreign key itself stays.
    assert any(c["foreign_key"] and c["columns"] == [column] for c in constraints.values())


@pytest.mark.django_db
def test_a_tenant_grown_since_the_last_analyze_still_has_its_exec_found_in_one_read() -> None:
    """Statistics taken before a tenant had execs estimate it has none; the lookup of one
    of its execs must not then read all of them (an index on the tenant alone did)."""
    seen = WorkspaceFactory(container_id="c")
    Exec.objects.bulk_create(
        ExecFactory.build(workspace=seen, tenant=seen.tenant) for _ in range(200)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Exec._meta.db_table}")
    grown = WorkspaceFactory(container_id="c", tenant=TenantFactory())
    execs = Exec.objects.bulk_create(
        ExecFactory.build(workspace=grown, tenant=grown.tenant) for _ in range(400)
    )
    wanted = execs[123].public_id
    actor = system_principal(grown.tenant)
    assert exec_get(actor=actor, exec_id=wanted, with_workspace=False).pk == execs[123].pk

    query = Exec.objects.filter(tenant_id=grown.tenant_id, public_id=wanted)
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        (plan,) = cursor.fetchone()[0]

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    scans = [n for n in nodes(plan["Plan"]) if "Index Name" in n or "Scan" in n["Node Type"]]
    assert scans and all(n.get("Rows Removed by Filter", 0) == 0 for n in scans), scans
    assert all(n["Node Type"] != "Seq Scan" for n in scans), scans


@pytest.mark.django_db
def test_a_batch_of_stored_output_holds_what_its_budget_allows_and_at_least_one_chunk(
    tenant: Any,
) -> None:
    exec_ = ExecFactory(workspace__tenant=tenant)
    sizes = [300, 300, 300, 5000, 10]
    ExecChunk.objects.bulk_create(
        ExecChunk(exec=exec_, seq=seq, stream=1, data=bytes([96 + seq]) * size)
        for seq, size in enumerate(sizes, start=1)
    )

    def batch(after_seq: int) -> list[int]:
        found = exec_messages_after(exec_pk=exec_.pk, after_seq=after_seq, max_bytes=700)
        return [m.seq for m in found]

    assert batch(0) == [1, 2]  # a third chunk would be 900 bytes
    assert batch(2) == [3]
    assert batch(3) == [4]  # larger than the budget alone: still one
    assert batch(4) == [5]
    assert batch(5) == []
    first = exec_messages_after(exec_pk=exec_.pk, after_seq=0, max_bytes=700)[0]
    assert first.data == "a" * 300 and first.stream == "stdout"


@pytest.mark.django_db
def test_output_in_many_small_chunks_comes_whole_within_one_batch(tenant: Any) -> None:
    exec_ = ExecFactory(workspace__tenant=tenant)
    ExecChunk.objects.bulk_create(
        ExecChunk(exec=exec_, seq=seq, stream=1 + seq % 2, data=b"line %05d\n" % seq)
        for seq in range(1, 6001)
    )
    found = exec_messages_after(exec_pk=exec_.pk, after_seq=0)  # 60 KB: one batch
    assert [m.seq for m in found] == list(range(1, 6001))
    assert found[-1].data == "line 06000\n" and found[-1].stream == "stdout"
    # A budget reached mid-way stops it there, in the step it is reached in.
    found = exec_messages_after(exec_pk=exec_.pk, after_seq=100, max_bytes=11 * 2000)
    assert [m.seq for m in found] == list(range(101, 2101))
