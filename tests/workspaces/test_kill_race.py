"""A kill right after a spawn that did not wait: the kill wins, cleanly, every time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.workspaces.conftest import wait_for
from workspaces.models import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]

URL = "/api/v1/workspaces"
ROUNDS = 20


def test_kill_right_after_a_spawn_without_waiting_wins(
    live_worker: Any, api: Any, tenant: Any, engine: Any
) -> None:
    log_start = len(live_worker.log_path.read_text(errors="replace"))
    answers = []
    for i in range(ROUNDS):
        spawned = api.post(URL, {"wait": False}, content_type="application/json")
        assert spawned.status_code == 202, spawned.content
        # Spread the kills over the provisioning: before, during and after the engine work.
        time.sleep((i % 10) * 0.04)
        killed = api.delete(f"{URL}/{spawned.json()['id']}?force=true")
        answers.append((killed.status_code, killed.json().get("status"), killed.json()))
    assert [a[:2] for a in answers] == [(200, "removed")] * ROUNDS, answers

    label = {"label": f"devbench.tenant={tenant.slug}"}
    wait_for(
        lambda: (
            not engine.containers.list(all=True, filters=label)
            and not engine.volumes.list(filters=label)
        ),
        what="every container and volume of the killed workspaces to be gone",
    )
    rows = Workspace.objects.filter(tenant=tenant)
    assert rows.count() == ROUNDS
    assert set(rows.values_list("status", flat=True)) == {"removed"}
    # Nothing counts against the quota: a new spawn works.
    again = api.post(URL, {"wait": True}, content_type="application/json")
    assert again.status_code == 201, again.content
    api.delete(f"{URL}/{again.json()['id']}?force=true")
    assert "Traceback" not in live_worker.log_path.read_text(errors="replace")[log_start:]
