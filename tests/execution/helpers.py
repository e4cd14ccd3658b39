"""Helpers for exec tests: look inside the container without going through execs, run a
runner in this process."""

from __future__ import annotations

import threading
from typing import Any

from workspaces.runtime import get_driver
from workspaces.runtime.base import ExecSpec


def container_run(workspace: Any, *cmd: str, user: str = "1000:1000") -> str:
    """Run a helper command straight through the driver (no Exec row, no slot)."""
    exit_code, out, err = get_driver().exec_collect(
        workspace.container_id, ExecSpec(cmd=list(cmd), user=user)
    )
    assert exit_code == 0, (exit_code, out, err)
    return out.decode()


def processes(workspace: Any) -> list[str]:
    """Command lines of every process in the container (as `ps` shows them)."""
    lines = container_run(workspace, "ps", "-o", "args").splitlines()[1:]
    return [line.strip() for line in lines]


def leftovers(workspace: Any, needle: str) -> list[str]:
    return [p for p in processes(workspace) if needle in p and not p.startswith("ps ")]


def run_in_thread(exec_: Any) -> threading.Thread:
    """The exec's runner (its row only, no task sent), started in a thread of this process
    with a database connection of its own."""
    from django.db import connection

    from execution import runner
    from execution.models import Exec
    from execution.tasks import SENDERS

    loaded = Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk)

    def run_it() -> None:
        try:
            runner.run_exec(loaded, senders=SENDERS)
        finally:
            connection.close()

    thread = threading.Thread(target=run_it)
    thread.start()
    return thread
