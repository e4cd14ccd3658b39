"""Fifty spawns in flight while the API keeps answering."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from tenants.models import TenantPolicy
from tests.conftest import client_for
from tests.processes import wait_for
from workspaces.models import Workspace
from workspaces.runtime import get_driver

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

URL = "/api/v1/workspaces"
COUNT = 50


def test_fifty_spawns_in_flight(live_worker, api, token, tenant, kill_after):
    TenantPolicy.objects.filter(tenant=tenant).update(max_workspaces=COUNT)
    answers: list[int] = []

    def spawn(n: int) -> None:
        try:
            response = client_for(token).post(
                URL, {"alias": f"load-{n}", "wait": False}, content_type="application/json"
            )
            answers.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=spawn, args=(n,)) for n in range(COUNT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    kill_after.extend(Workspace.objects.filter(tenant=tenant))
    assert answers == [202] * COUNT

    polls = {"while_creating": 0}

    def all_running() -> bool:
        listing = api.get(URL, {"limit": 100})
        assert listing.status_code == 200  # the API answers while the worker is busy
        statuses = [w["status"] for w in listing.json()["items"]]
        assert len(statuses) == COUNT and "error" not in statuses
        if "creating" in statuses:
            polls["while_creating"] += 1
            return False
        return True

    wait_for(all_running, timeout_s=300, what="fifty workspaces to run")
    assert polls["while_creating"] >= 1
    containers = get_driver().list_by_labels({"devbench.tenant": tenant.slug})
    assert len(containers) == COUNT and all(c.running for c in containers)
    over = api.post(URL, {"wait": False}, content_type="application/json")
    assert over.status_code == 429 and over.json()["code"] == "workspace_quota_exceeded"
