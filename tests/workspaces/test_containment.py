"""A fork bomb and a memory hog stay inside their workspace; the API keeps answering."""

from __future__ import annotations

import pytest

from tests.processes import wait_for
from workspaces.models import Workspace
from workspaces.runtime import get_driver

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

URL = "/api/v1/workspaces"
FORK_BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)
"""


def test_fork_bomb_and_memory_hog_are_contained(live_worker, api, engine, kill_after):
    limits = {"memory_mb": 128, "cpus": 0.5, "pids": 48}
    created = api.post(
        URL, {"image": "devbench/base", "limits": limits}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    ws = created.json()
    row = Workspace.objects.get(public_id=ws["id"])
    kill_after.append(row)
    container = engine.containers.get(row.container_id)

    # Memory hog: the kernel kills it at the limit, the workspace lives on.
    hog = container.exec_run(["python3", "-c", "b = b'x' * (512 << 20)"])
    assert hog.exit_code == 137  # SIGKILL by the OOM killer
    assert get_driver().inspect(row.container_id).running
    assert api.get(f"{URL}/{ws['id']}").json()["status"] == "running"

    # Fork bomb: every process keeps forking; the pids limit holds it.
    container.exec_run(["python3", "-c", FORK_BOMB], detach=True)

    def saturated() -> dict | None:
        stats = api.get(f"{URL}/{ws['id']}/stats")
        assert stats.status_code == 200  # the API (and the engine) still answer
        body = stats.json()
        return body if body["pids"] >= limits["pids"] - 2 else None

    stats = wait_for(saturated, what="the fork bomb to reach the pids limit")
    assert stats["pids"] <= limits["pids"]
    assert stats["cpu_percent"] <= 50 * 1.5  # 0.5 CPU, with sampling slack
    assert stats["memory_limit_mb"] == 128
    assert api.get(URL).status_code == 200
    assert api.get("/healthz").status_code == 200

    killed = api.delete(f"{URL}/{ws['id']}?force=true")
    assert killed.status_code == 200 and killed.json()["status"] == "removed"
    assert get_driver().list_by_labels({"devbench.workspace": ws["id"]}) == []
