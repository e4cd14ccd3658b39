"""The README's embedded default, served for real: migrate, bootstrap_demo, daphne.

With only a Docker engine (SQLite, in-process tasks), the demo token works on
REST and on the tenant's MCP endpoint: spawn, run a command, read a file, kill.
"""

from __future__ import annotations

import json
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
    # A first bootstrap makes no authentication attempt: no audit "denied" line.
    assert '"outcome": "denied"' not in done.stdout + done.stderr
    token = (tmp_path / "demo-token").read_text().strip()
    assert token in done.stdout
    server = DaphneServer(env=env, name="embedded", port=port)
    yield base, token, server
    server.stop()


def test_demo_token_drives_rest_and_mcp_in_the_embedded_default(embedded):
    base, token, server = embedded
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

    # Quiet logs: one line per refused request (not two), nothing per MCP request.
    refused = rest.post("/api/v1/workspaces", json={"image": 5})
    assert refused.status_code == 422
    log = server.log_tail(1_000_000)
    assert log.count("Unprocessable Entity: /api/v1/workspaces") == 1, log[-3000:]
    assert "Terminating session" not in log


def readme_example(name: str) -> str:
    """The shell block after ``<!-- example: NAME -->`` in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- example: {name} -->\n```sh\n", 1)[1]
    return after.split("\n```\n", 1)[0]


def run_example(name: str, base: str, token_file: Path) -> str:
    script = readme_example(name).replace("http://127.0.0.1:8000", base)
    script = script.replace("$(cat var/demo-token)", f"$(cat {token_file})")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_examples_work_as_written(embedded, tmp_path: Path) -> None:
    base, token, _server = embedded
    token_file = tmp_path / "demo-token"
    assert token_file.read_text().strip() == token

    rest = run_example("rest", base, token_file)
    assert '"alias": "demo"' in rest and '"status": "running"' in rest
    assert '"stdout": "hello\\n1000\\n"' in rest
    assert "my notes\n" in rest
    assert rest.rstrip().endswith("}") and '"status": "removed"' in rest

    mcp = run_example("mcp", base, token_file)
    data = [line.removeprefix("data: ") for line in mcp.splitlines() if line.startswith("data: ")]
    events = [json.loads(line) for line in data]
    results = [event["result"] for event in events]
    assert [r.get("isError", False) for r in results] == [False, False, True, False]
    assert results[1]["structuredContent"]["stdout"] == "Linux\n"
    assert json.loads(results[2]["content"][0]["text"])["code"] == "path_outside_workspace"
    assert results[3]["structuredContent"]["status"] == "removed"
