"""Smoke test of execs in the embedded mode: SQLite, in-memory channel layer, in-process tasks."""

import json
import os
import subprocess
import sys

import pytest

from tests.processes import ROOT, TEST_INSTANCE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SCRIPT = r"""
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from execution.services import exec_cancel, exec_poll, exec_run, exec_start
from tenants.principal import system_principal
from tenants.services import tenant_create
from workspaces.services import workspace_kill, workspace_spawn

actor = system_principal(tenant_create(slug="embedded"))
workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
try:
    cmd = ["sh", "-c", "echo hi; echo err >&2; exit 3"]
    run = exec_run(actor=actor, workspace=workspace, cmd=cmd)
    cmd = ["sh", "-c", "echo early; sleep 600"]
    started = exec_start(actor=actor, workspace=workspace, cmd=cmd)
    polled = exec_poll(actor=actor, exec_id=started.public_id, wait_s=20)
    cancelled = exec_cancel(actor=actor, exec_id=started.public_id)
    print(json.dumps({
        "run": [run.status, run.exit_code, run.stdout, run.stderr],
        "polled": [m.data for m in polled.messages],
        "cancelled": cancelled.status,
    }))
finally:
    workspace_kill(actor=actor, workspace=workspace, force=True)
"""


def test_execs_work_in_the_embedded_mode(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    env.update(
        DEVBENCH_VAR_DIR=str(tmp_path),
        DEVBENCH_INSTANCE=TEST_INSTANCE,
        DJANGO_SETTINGS_MODULE="devbench_site.settings",
        LOG_LEVEL="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "run": ["completed", 3, "hi\n", "err\n"],
        "polled": ["early\n"],
        "cancelled": "cancelled",
    }
