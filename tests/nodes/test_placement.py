"""Placement, liveness and the node admin on rows alone (no engine needed)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.errors import ImageNotFound, ValidationFailed
from execution.models import Exec, ExecChunk, ExecStatus
from tests.factories import TenantFactory, UserFactory, WorkspaceFactory
from workspaces.models import Node, Workspace
from workspaces.nodes import node_restore_workspaces, node_set_drain, nodes_check
from workspaces.placement import (
    MIB,
    CapacityExhausted,
    NoNodeMatches,
    node_place,
    required_labels,
)
from workspaces.runtime import wire
from workspaces.runtime.agent import AgentBadRequest
from workspaces.runtime.base import EnginePathNotFound

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_local_node(settings: Any) -> None:
    settings.DEVBENCH_ENGINE_DIRECT = False  # only the rows made here count


def _node(name: str, **fields: Any) -> Node:
    fields.setdefault("heartbeat_at", timezone.now())
    fields.setdefault("labels", {"zone": "a"})
    return Node.objects.create(name=name, **fields)


def _fill(node: str, count: int, *, memory_mb: int = 512, cpus: float = 1) -> None:
    tenant = TenantFactory()
    for _ in range(count):
        WorkspaceFactory(tenant=tenant, node=node, limits={"memory_mb": memory_mb, "cpus": cpus})


def _place(**labels: str) -> str:
    # Every node made here is in zone a: rows any other process left behind are not.
    return node_place(labels={"zone": "a", **labels}, memory_bytes=512 * MIB, cpus=1).name


def test_spread_takes_the_largest_free_share_and_pack_the_smallest(settings: Any) -> None:
    _node("big", max_workspaces=10)
    _node("small", max_workspaces=4)
    _fill("big", 4)  # 60 % free
    _fill("small", 1)  # 75 % free
    assert _place() == "small"
    settings.DEVBENCH_PLACEMENT = "pack"
    assert _place() == "big"


def test_memory_and_cpus_are_capacity_too() -> None:
    _node("mem", memory_bytes=1024 * MIB)
    _node("cpu", cpus=Decimal("1.5"))
    _fill("mem", 2, memory_mb=512, cpus=0.1)  # memory full
    assert _place() == "cpu"
    _fill("cpu", 1, memory_mb=16, cpus=1)  # 0.5 CPU left: a 1-CPU workspace does not fit
    with pytest.raises(CapacityExhausted) as exc:
        _place()
    assert exc.value.code == "capacity_exhausted" and exc.value.http_status == 503
    assert node_place(labels={"zone": "a"}, memory_bytes=16 * MIB, cpus=0.5).name == "cpu"


def test_draining_down_and_silent_nodes_get_nothing(settings: Any) -> None:
    _node("draining", state="draining", drain=True)
    _node("down", state="down")
    _node("silent", heartbeat_at=timezone.now() - timedelta(seconds=600))
    with pytest.raises(CapacityExhausted):
        _place()
    _node("fine")
    assert _place() == "fine"


def test_labels_must_all_match_and_the_policy_wins() -> None:
    _node("plain", labels={"zone": "a"})
    _node("gvisor", labels={"zone": "a", "runtime": "gvisor"})
    assert _place(runtime="gvisor") == "gvisor"
    with pytest.raises(NoNodeMatches) as exc:
        _place(runtime="kata")
    assert exc.value.code == "node_labels_unmatched"
    assert required_labels(policy_labels={"runtime": "gvisor"}, requested={"zone": "a"}) == {
        "runtime": "gvisor",
        "zone": "a",
    }
    with pytest.raises(ValidationFailed) as conflict:
        required_labels(policy_labels={"runtime": "gvisor"}, requested={"runtime": "runc"})
    assert conflict.value.code == "node_labels_conflict"


def test_a_silent_node_goes_down_then_comes_back() -> None:
    stale = timezone.now() - timedelta(seconds=600)
    node = _node("gone", heartbeat_at=stale)
    _node("alive")
    running = WorkspaceFactory(node="gone", status="running")
    stopped = WorkspaceFactory(
        node="gone", status="stopped", error_code="stopped_on_request", tenant=running.tenant
    )
    other = WorkspaceFactory(node="alive", status="running", tenant=running.tenant)
    exec_ = Exec.objects.create(
        tenant=running.tenant, workspace=running, node="gone", cmd=["sleep", "9"], status="running"
    )
    ExecChunk.objects.create(exec=exec_, seq=1, stream=1, data=b"before\n")

    assert nodes_check() == ["gone"]
    assert nodes_check() == []  # once per outage
    node.refresh_from_db()
    assert node.state == "down"
    running.refresh_from_db()
    assert (running.status, running.error_code, running.prior_status) == (
        "unavailable",
        "node_unavailable",
        "running",
    )
    other.refresh_from_db()
    assert other.status == "running"
    exec_.refresh_from_db()
    assert (exec_.status, exec_.error_code) == (ExecStatus.LOST, "node_unavailable")
    assert ExecChunk.objects.filter(exec=exec_).count() == 1  # stored output stays

    assert node_restore_workspaces(node="gone") == 2
    stopped.refresh_from_db()
    assert (stopped.status, stopped.error_code) == ("stopped", "stopped_on_request")
    running.refresh_from_db()
    assert (running.status, running.prior_status) == ("running", "")


def test_drain_survives_an_outage() -> None:
    node = node_set_drain(node=_node("d"), drain=True)
    assert node.state == "draining"
    Node.objects.filter(pk=node.pk).update(state="down")
    from workspaces.nodes import node_heartbeat

    assert node_heartbeat(name="d") is True
    assert Node.objects.get(pk=node.pk).state == "draining"


def test_agent_errors_keep_their_class_and_code() -> None:
    sent = ImageNotFound("no such image", image="x")
    got = wire.error_from(wire.error_body(sent), 422)
    assert isinstance(got, ImageNotFound)
    assert (got.code, got.message, got.extra, got.http_status) == (
        "image_not_found",
        "no such image",
        {"image": "x"},
        422,
    )
    # A code other families share is the engine's error: a missing path, as locally.
    missing = wire.error_from(wire.error_body(EnginePathNotFound("gone", path="/w/x")), 404)
    assert isinstance(missing, EnginePathNotFound) and missing.extra == {"path": "/w/x"}
    bad = wire.error_from(wire.error_body(AgentBadRequest("no JSON")), 400)
    assert isinstance(bad, AgentBadRequest)
    unknown = wire.error_from({"error": {"code": "from_a_newer_agent"}}, 502)
    assert (unknown.code, unknown.http_status) == ("from_a_newer_agent", 502)
    assert wire.error_from("not json", 500).code == "node_agent_error"


def test_only_superusers_see_nodes_in_the_admin() -> None:
    _node("visible", max_workspaces=3)
    _fill("visible", 2)
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = admin.get("/admin/workspaces/node/")
    assert page.status_code == 200 and "2 / 3" in page.content.decode()
    staff = Client()
    staff.force_login(UserFactory(is_staff=True))
    assert staff.get("/admin/workspaces/node/").status_code == 403
    assert Workspace.objects.count() == 2
