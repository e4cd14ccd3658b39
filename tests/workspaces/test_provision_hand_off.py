"""Provisioning handed to the node's worker through its agent, without the broker: run in
a thread of the worker to a running workspace, bounded, refused while draining, and
queued as a task whenever the worker does not take it or the engine does not answer."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.errors import EngineUnavailable
from execution.drain import drain_begin, drain_reset
from tests.processes import wait_for
from tests.workspaces.conftest import status_of
from workspaces import provisioning, tasks
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.services import workspace_spawn

BUSYBOX = "devbench/busybox:latest"


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The provisioning tasks sent to the broker (recorded, never run)."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.workspace_provision_task, "apply_async", lambda **kw: sent.append(kw))
    return sent


def _spawn_unprovisioned(actor: Any, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A spawn's committed row, still creating: its provisioning left to the test."""
    with monkeypatch.context() as patched:
        patched.setattr(provisioning, "node_hand_off", lambda *a: False)
        workspace = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    return workspace


def test_a_handed_off_spawn_runs_in_a_worker_thread_to_running(
    transactional_db: Any,
    actor: Any,
    kill_after: list[Workspace],
    queued: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace = _spawn_unprovisioned(actor, monkeypatch)
    kill_after.append(workspace)
    queued.clear()  # the spawn's own task: never run here (no worker consumes it)
    names: list[str] = []
    real = tasks.workspace_provision

    def recording(**kwargs: Any) -> Any:
        names.append(threading.current_thread().name)
        return real(**kwargs)

    monkeypatch.setattr(tasks, "workspace_provision", recording)
    assert tasks._take_provision({"workspace_pk": workspace.pk}) is True
    wait_for(lambda: status_of(workspace) != WorkspaceStatus.CREATING, what="provisioning")
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.RUNNING
    assert get_driver().inspect(workspace.container_id).running
    assert names == [f"provision-hand-off-{workspace.pk}"]
    assert queued == []  # nothing went through the broker
    wait_for(lambda: tasks.PROVISIONS.running == 0, what="the thread to end")


def test_the_enqueue_hands_off_first_and_queues_what_is_not_taken(
    actor: Any, queued: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = _spawn_unprovisioned(actor, monkeypatch)
    queued.clear()
    handed: list[tuple[str, str, dict[str, Any]]] = []
    taken = {"answer": True}

    def node_hand_off(node: str, work: str, args: dict[str, Any]) -> bool:
        handed.append((node, work, args))
        return taken["answer"]

    monkeypatch.setattr(provisioning, "node_hand_off", node_hand_off)
    provisioning.workspace_provision_enqueue(workspace=workspace)
    assert handed == [(workspace.node, tasks.PROVISION, {"workspace_pk": workspace.pk})]
    assert queued == []
    # With the policy the spawn read, the worker is handed the rows it would load.
    handed.clear()
    loaded = Workspace.all_objects.select_related("tenant", "tenant__policy").get(pk=workspace.pk)
    provisioning.workspace_provision_enqueue(workspace=loaded, policy=loaded.tenant.policy)
    [(_, _, args)] = handed
    assert args["workspace_pk"] == workspace.pk
    assert args["row"]["workspace"]["id"] == workspace.pk
    assert args["row"]["policy"]["tenant_id"] == workspace.tenant_id
    taken["answer"] = False
    provisioning.workspace_provision_enqueue(workspace=workspace)
    assert queued == [{"args": [workspace.pk], "queue": f"node.{workspace.node}"}]


def test_hand_offs_are_bounded_refused_while_draining_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []
    release = threading.Event()

    def provision(*, workspace_id: int, final_attempt: bool, row: Any = None) -> None:
        started.append(workspace_id)
        release.wait(30)

    monkeypatch.setattr(tasks, "workspace_provision", provision)
    monkeypatch.setattr(tasks, "PROVISION_HAND_OFFS", 1)
    assert tasks._take_provision({"workspace_pk": 1}) is True
    assert tasks._take_provision({"workspace_pk": 2}) is False  # the one slot is busy
    release.set()
    wait_for(lambda: tasks.PROVISIONS.running == 0, what="the thread to end")
    drain_begin(timeout_s=30)
    try:
        assert tasks._take_provision({"workspace_pk": 3}) is False  # shutting down
    finally:
        drain_reset()
    assert started == [1]
    for bad in (
        {},
        {"workspace_pk": "1"},
        {"workspace_pk": True},
        {"workspace_pk": None},
        {"workspace_pk": 4, "row": "not an object"},
    ):
        with pytest.raises(ValueError):
            tasks._take_provision(bad)


def test_an_engine_that_does_not_answer_leaves_it_to_the_task(
    actor: Any, queued: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task retries with back-off; the handed-off attempt does not mark it failed."""
    workspace = _spawn_unprovisioned(actor, monkeypatch)
    queued.clear()

    def engine_down(*, workspace_id: int, final_attempt: bool, row: Any = None) -> None:
        assert final_attempt is False
        raise EngineUnavailable("no engine")

    monkeypatch.setattr(tasks, "workspace_provision", engine_down)
    tasks._provision_handed_off(workspace.pk)
    assert queued == [{"args": [workspace.pk], "queue": f"node.{workspace.node}", "countdown": 2}]
    assert status_of(workspace) == WorkspaceStatus.CREATING
    queued.clear()
    Workspace.all_objects.filter(pk=workspace.pk).delete()
    tasks._provision_handed_off(workspace.pk)  # gone meanwhile: nothing to queue
    assert queued == []


def test_a_hand_off_that_breaks_in_any_way_is_a_refusal(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller then queues the work: a spawn or an exec is never lost to a hand-off."""
    from workspaces import nodes
    from workspaces.runtime import agent
    from workspaces.runtime.remote import RemoteDriver

    class Broken(RemoteDriver):
        def hand_off(self, name: str, args: dict[str, Any], *, timeout_s: float) -> bool:
            raise RuntimeError("unexpected")

    settings.DEVBENCH_ENGINE_DIRECT = False
    monkeypatch.setattr(nodes, "node_driver", lambda name: object.__new__(Broken))
    assert nodes.node_hand_off("n9", tasks.PROVISION, {"workspace_pk": 1}) is False

    def refusing(args: dict[str, Any]) -> bool:
        raise ValueError("bad arguments")

    monkeypatch.setattr(agent, "_hand_offs", {tasks.PROVISION: refusing})
    monkeypatch.setattr(nodes, "_served", {"n9"})
    assert nodes.node_hand_off("n9", tasks.PROVISION, {}) is False  # in-process, too
