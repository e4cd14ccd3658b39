"""The embedded default (SQLite, in-process tasks and scheduler) spawns, waits and expires."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.processes import ROOT, TEST_INSTANCE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPT = textwrap.dedent(
    """
    import time
    import django
    django.setup()
    from django.conf import settings
    from devbench_site import scheduler
    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.models import Workspace
    from workspaces.runtime import get_driver
    from workspaces.services import workspace_spawn

    assert settings.EMBEDDED and settings.CELERY_TASKS_IN_PROCESS
    assert scheduler._started is not None, "the scheduler thread did not start"
    actor = system_principal(Tenant.objects.create(slug="embedded", name="Embedded"))
    ws = workspace_spawn(actor=actor, image="devbench/busybox:latest", ttl_s=1)
    assert ws.status == "running", ws.status
    assert get_driver().inspect(ws.container_id).running
    deadline = time.monotonic() + 60
    while Workspace.objects.get(pk=ws.pk).status != "removed":
        assert time.monotonic() < deadline, "the scheduler did not expire the workspace"
        time.sleep(0.2)
    assert get_driver().list_by_labels({"devbench.workspace": ws.public_id}) == []
    print("EMBEDDED-OK")
    """
)


def test_embedded_mode_end_to_end(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="devbench_site.settings",
        DEVBENCH_VAR_DIR=str(tmp_path),
        DEVBENCH_INSTANCE=TEST_INSTANCE,
        DEVBENCH_EXPIRE_INTERVAL_S="1",
    )
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={**env, "DEVBENCH_SCHEDULER": "on"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "EMBEDDED-OK" in run.stdout
