"""The README's embedded default, served for real: migrate, bootstrap_demo, daphne.

With only a Docker engine (SQLite, in-process tasks), the demo token works on
REST and on the tenant's MCP endpoint: spawn, run a command, read a file, kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.mcp_live import mcp_call, ok
from tests.processes import ROOT, TEST_INSTANCE, DaphneServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.slow]

_PRODUCTION_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE",
                    "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE",
                    "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS")  # fmt: skip


@pytest.fixture
def embedded(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in _PRODUCTION_VARS}
    env.update(
        DJANGO_SETTINGS_MODULE="devbench_site.settings",
        DEVBENCH_VAR_DIR=str(tmp_path),
        DEVBENCH_INSTANCE=TEST_INSTANCE,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    for argv in (["migrate", "--noinput", "-v0"], ["bootstrap_demo", "--base-url", base]):
        done = subprocess.run([sys.executable, "manage.py", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert f"{base}/mcp/demo/" in done.stdout
    token = (tmp_path / "demo-token").read_text().strip()
    assert token in done.stdout
    server = DaphneServer(env=env, name="embedded", port=port)
    yield base, token
    server.stop()


def test_demo_token_drives_rest_and_mcp_in_the_embedded_default(embedded):
    base, token = embedded
    rest = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    me = rest.get("/api/v1/me").json()
    assert me["tenant"]["slug"] == "demo" and "admin" in me["scopes"]
    assert rest.get("/readyz").json()["checks"]["redis"]["status"] == "ok"  # none needed

    spawned = rest.post("/api/v1/workspaces", json={"image": "devbench/busybox", "alias": "qs"})
    assert spawned.status_code == 201, spawned.text
    workspace_id = spawned.json()["id"]
    try:
        mcp = f"{base}/mcp/demo/"
        status = ok(mcp_call(mcp, token, "system_status"))
        assert status["mode"] == "embedded" and status["engine"]["reachable"] is True
        ok(mcp_call(mcp, token, "fs_write", {"container_id": "qs", "path": "/workspace/hi.txt",
                                               "content": "from mcp\n"}))  # fmt: skip
        run = ok(
            mcp_call(
                mcp,
                token,
                "exec_run",
                {"container_id": workspace_id, "cmd": ["sh", "-c", "cat hi.txt; id -u"]},
            )
        )
        assert run["exit_code"] == 0 and run["status"] == "completed"
        assert run["stdout"] == "from mcp\n1000\n"
        read = rest.get(f"/api/v1/workspaces/{workspace_id}/files",
                        params={"path": "/workspace/hi.txt"})  # fmt: skip
        assert read.json()["content"] == "from mcp\n"
    finally:
        killed = rest.delete(f"/api/v1/workspaces/{workspace_id}")
    assert killed.status_code == 200 and killed.json()["status"] == "removed"
