import shutil
import socket
import subprocess
import time

import pytest
from django.test import Client

from tests.processes import free_port

pytestmark = pytest.mark.django_db


def test_healthz_is_always_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_when_database_redis_and_engine_answer():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "redis", "docker"}


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server this test owns, so it can stop it."""
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


def test_readyz_reports_a_stopped_redis(settings, own_redis):
    proc, url = own_redis
    settings.REDIS_URL = url
    assert Client().get("/readyz").status_code == 200
    proc.terminate()
    proc.wait()
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_reports_an_unreachable_engine(settings, tmp_path):
    from workspaces.runtime import get_driver

    settings.DEVBENCH_DOCKER_HOST = f"unix://{tmp_path}/absent.sock"
    get_driver.cache_clear()
    try:
        response = Client().get("/readyz")
    finally:
        get_driver.cache_clear()
    assert response.status_code == 503
    assert response.json()["down"] == ["docker"]
    assert "absent.sock" in response.json()["checks"]["docker"]["error"]
