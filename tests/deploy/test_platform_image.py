"""The shipped deployment, built and run: the platform image and docker-compose.yml.

The image is built by scripts/build-platform-image (from the local Debian + Python
base, no network in the build). Its web server and Celery worker then run with
``docker run`` on the host network against the test PostgreSQL and Redis (servers on
127.0.0.1 only): /readyz answers 200 and a spawn + exec goes through them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import yaml
from django.conf import settings

from tests.processes import ROOT, TEST_INSTANCE, service_env

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

SOCKET = "/var/run/docker.sock"


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    tag = f"devbench/platform:test-{TEST_INSTANCE}"
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-platform-image"), "--tag", tag],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    yield tag
    docker("image", "rm", "-f", tag, check=False)


def test_image_runs_as_a_user_and_holds_no_local_state(image: str) -> None:
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                 "id -u; id -g; ls -A /app; ls -A /app/var | wc -l")  # fmt: skip
    uid, gid, *entries, var_entries = out.split()
    assert uid != "0" and gid != "0"
    assert {"manage.py", "devbench_site", "staticfiles", "var"} <= set(entries)
    assert not {".git", ".venv", "tests", "bench", "wheelhouse", ".env"} & set(entries)
    assert var_entries == "0"  # no secret key, password, token or database of the build host


def test_the_build_leaves_no_untagged_stage_behind(image: str) -> None:
    # The classic builder leaves a multi-stage build's earlier stage untagged, as large
    # as the image: one more after every build.
    assert docker("images", "-q", "devbench/platform-build:latest").strip()
    untagged = docker("images", "-q", "--filter", "dangling=true",
                      "--filter", "label=org.devbench.build-stage=platform")  # fmt: skip
    assert untagged.strip() == ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolated_redis(url: str) -> str:
    """Another Redis database: the session's own Celery worker never takes these tasks."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 8) % 16}"))


@pytest.fixture
def platform(image: str, transactional_db: Any) -> Iterator[str]:
    from django.db import connection

    port = _free_port()
    env = {
        "DATABASE_URL": service_env(str(connection.settings_dict["NAME"]))["DATABASE_URL"],
        "REDIS_URL": _isolated_redis(settings.REDIS_URL),
        "SECRET_KEY": os.environ["SECRET_KEY"],
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "DEVBENCH_INSTANCE": TEST_INSTANCE,
        "DEVBENCH_HOST": "127.0.0.1",
        "DEVBENCH_PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    flags = ["--network", "host", "--group-add", str(os.stat(SOCKET).st_gid),
             "-v", f"{SOCKET}:{SOCKET}"]  # fmt: skip
    for key, value in env.items():
        flags += ["-e", f"{key}={value}"]
    suffix = uuid.uuid4().hex[:8]
    names = [f"devbench-web-{suffix}", f"devbench-worker-{suffix}"]
    docker("run", "-d", "--name", names[0], *flags, image)
    docker("run", "-d", "--name", names[1], *flags, image,
           "celery", "-A", "devbench_site", "worker", "-P", "threads", "-c", "8",
           "-Q", f"default,node.{settings.DEVBENCH_NODE}", "--without-mingle",
           "--without-gossip", "--loglevel=INFO")  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for name in names:
            print(f"--- docker logs {name}\n{docker('logs', name, check=False)[-4000:]}")
            docker("rm", "-f", name, check=False)


def _wait_ready(base: str) -> httpx.Response:
    deadline = time.monotonic() + 180
    while True:
        try:
            response = httpx.get(f"{base}/readyz", timeout=10)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_image_web_and_worker_serve_ready_spawn_and_exec(
    platform: str, tenant: Any, token: Any
) -> None:
    ready = _wait_ready(platform)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["docker"]["status"] == "ok"
    headers = {"Authorization": f"Bearer {token.raw}"}
    with httpx.Client(base_url=f"{platform}/api/v1", headers=headers, timeout=180) as api:
        spawned = api.post("/workspaces", json={"image": "devbench/busybox:latest"})
        assert spawned.status_code == 201, spawned.text
        ws_id = spawned.json()["id"]
        try:
            run = api.post(
                f"/workspaces/{ws_id}/execs",
                json={"cmd": ["sh", "-c", "echo from the image; id -u"], "wait": True},
            )
            assert run.status_code == 200, run.text
            body = run.json()
            assert (body["status"], body["exit_code"]) == ("completed", 0)
            assert body["stdout"] == "from the image\n1000\n"
        finally:
            killed = api.delete(f"/workspaces/{ws_id}", params={"force": True})
        assert killed.status_code == 200 and killed.json()["status"] == "removed"


def test_compose_file_validates_and_keeps_its_promises() -> None:
    env = {**os.environ, "SECRET_KEY": "x" * 50, "DOCKER_GID": "999"}
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    web = services["web"]
    assert web["command"] == ["scripts/serve"]
    assert [p["host_ip"] if isinstance(p, dict) else p.split(":")[0] for p in web["ports"]] == [
        "127.0.0.1"
    ]
    assert web["environment"]["SECURE_SSL_REDIRECT"] == "false"  # plain HTTP out of the box
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    with_socket = {
        name
        for name, svc in services.items()
        if any(SOCKET in str(v) for v in svc.get("volumes", []))
    }
    assert with_socket == {"worker"}  # the web server reaches the engine through the worker
    assert services["worker"]["group_add"] == ["999"]
    sockets_dir = services["worker"]["environment"]["DEVBENCH_NODE_AGENT_SOCKET_DIR"]
    for name in ("web", "worker"):  # the web server reaches the agent on its Unix socket
        targets = [
            v["target"] if isinstance(v, dict) else v.split(":")[1]
            for v in services[name]["volumes"]
        ]
        assert sockets_dir in targets
    missing = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in env.items() if k != "SECRET_KEY"},
    )  # fmt: skip
    assert missing.returncode != 0 and "SECRET_KEY" in missing.stderr
