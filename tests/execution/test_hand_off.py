"""Handing an exec's runner to its node's worker: bounded, refused while draining, and
queued as a task whenever the worker does not take it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from execution import hand_off, tasks
from execution.drain import drain_begin, drain_reset
from execution.tasks import SENDERS


def _take(args: dict[str, Any]) -> bool:
    return hand_off._take_run(args, senders=SENDERS)


def test_a_runner_is_taken_only_within_the_bound_and_not_while_draining(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    release = threading.Event()

    def runner(*, exec_pk: int, senders: Any, row: Any) -> None:
        started.append(exec_pk)
        release.wait(30)

    monkeypatch.setattr(hand_off, "exec_execute", runner)
    settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS = 1
    assert _take({"exec_pk": 1}) is True
    assert _take({"exec_pk": 2}) is False  # the one slot is busy: the caller queues it
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "exec-hand-off-1"]:
        thread.join(30)
    assert _take({"exec_pk": 3}) is True  # the slot is free again
    assert started[:2] == [1, 3]
    for thread in [t for t in threading.enumerate() if t.name == "exec-hand-off-3"]:
        thread.join(30)

    settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS = 0
    assert _take({"exec_pk": 4}) is False  # hand-offs off
    settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS = 4
    drain_begin(timeout_s=30)
    try:
        assert _take({"exec_pk": 5}) is False  # shutting down: nothing new starts here
    finally:
        drain_reset()
    assert started == [1, 3]


@pytest.mark.parametrize("args", [{}, {"exec_pk": "7"}, {"exec_pk": True}, {"exec_pk": None}])
def test_bad_arguments_are_refused(args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _take(args)


def test_a_runner_the_node_does_not_take_is_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[tuple[str, str, dict[str, Any]]] = []
    queued: list[dict[str, Any]] = []
    answer = {"taken": True}

    def node_hand_off(node: str, work: str, args: dict[str, Any]) -> bool:
        handed.append((node, work, args))
        return answer["taken"]

    monkeypatch.setattr(tasks, "node_hand_off", node_hand_off)
    monkeypatch.setattr(tasks.exec_run_task, "apply_async", lambda **kw: queued.append(kw))
    SENDERS.run(41, "node.n1")
    assert handed == [("n1", "exec_run", {"exec_pk": 41})] and queued == []
    answer["taken"] = False
    SENDERS.run(42, "node.n1")
    assert queued == [{"args": [42], "queue": "node.n1"}]


def test_no_thread_to_start_is_a_refusal_that_keeps_no_slot(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS = 1

    def cannot_start(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", cannot_start)
        assert _take({"exec_pk": 9}) is False
    assert hand_off.RUNNERS.running == 0
