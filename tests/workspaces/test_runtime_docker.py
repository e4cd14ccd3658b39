"""The Docker driver against the real engine."""

import uuid
from typing import Any

import pytest
from django.conf import settings

from core.errors import ContainerGone, EngineUnavailable, ImageNotFound
from workspaces.runtime.base import LABEL_INSTANCE, ContainerSpec, VolumeMount
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.client import api_client, forget_clients

pytestmark = pytest.mark.docker


@pytest.fixture
def driver():
    return DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)


def _spec(name: str, **overrides) -> ContainerSpec:
    base: dict[str, Any] = {
        "image": "devbench/busybox:latest",
        "name": name,
        "labels": {LABEL_INSTANCE: settings.DEVBENCH_INSTANCE, "devbench.test": name},
        "entrypoint": ["/bin/sh"],
        "command": ["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
    }
    base.update(overrides)
    return ContainerSpec(**base)


def test_a_volume_mount_creates_its_labelled_volume_with_the_container(driver):
    name = f"drv-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-vol"
    labels = {LABEL_INSTANCE: settings.DEVBENCH_INSTANCE, "devbench.test": name}
    mount = VolumeMount(source=volume, target="/workspace", volume_labels=labels)
    info = driver.create(_spec(name, mounts=(mount,)))
    try:
        assert [v.name for v in driver.volume_list_by_labels({"devbench.test": name})] == [volume]
        driver.start(info.id)
        assert driver.inspect(info.id).running
    finally:
        driver.remove(info.id, force=True)
        driver.volume_remove(volume)
    assert driver.volume_list_by_labels({"devbench.test": name}) == []


def test_create_start_inspect_list_remove(driver):
    name = f"drv-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-vol"
    driver.volume_create(volume, {LABEL_INSTANCE: settings.DEVBENCH_INSTANCE})
    info = driver.create(_spec(name, mounts=(VolumeMount(source=volume, target="/workspace"),)))
    assert info.status == "created" and not info.running
    driver.start(info.id)
    running = driver.inspect(info.id)
    assert running.running and running.status == "running"
    assert running.labels["devbench.test"] == name
    host = running.raw["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["ReadonlyRootfs"] is True
    assert host["Init"] is True
    assert host["NetworkMode"] == "none"
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 512 * 1024 * 1024
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CgroupnsMode"] == "private"
    assert running.raw["Config"]["User"] == "1000:1000"

    listed = driver.list_by_labels({"devbench.test": name})
    assert [c.id for c in listed] == [info.id]

    driver.stop(info.id, timeout_s=5)
    assert driver.inspect(info.id).running is False
    driver.remove(info.id)
    assert driver.list_by_labels({"devbench.test": name}) == []
    driver.remove(info.id)  # removing twice is not an error
    driver.volume_remove(volume)
    driver.volume_remove(volume)


def test_missing_image_is_image_not_found(driver):
    with pytest.raises(ImageNotFound) as excinfo:
        driver.create(_spec(f"drv-{uuid.uuid4().hex[:8]}", image="devbench/absent:nope"))
    assert excinfo.value.code == "image_not_found"
    assert "devbench/absent:nope" in excinfo.value.message
    with pytest.raises(ImageNotFound):
        driver.image_inspect("devbench/absent:nope")


def test_removed_container_is_container_gone(driver):
    info = driver.create(_spec(f"drv-{uuid.uuid4().hex[:8]}"))
    driver.remove(info.id)
    for call in (driver.inspect, driver.start):
        with pytest.raises(ContainerGone) as excinfo:
            call(info.id)
        assert excinfo.value.code == "container_gone"


def test_unreachable_engine_is_engine_unavailable(tmp_path):
    dead = DockerDriver(base_url=f"unix://{tmp_path}/nothing.sock", timeout_s=2)
    with pytest.raises(EngineUnavailable) as excinfo:
        dead.ping()
    assert excinfo.value.code == "engine_unavailable"
    assert "nothing.sock" in excinfo.value.message


def test_the_local_socket_client_ignores_proxy_settings(monkeypatch):
    # requests would read these (and ~/.netrc) on every engine call otherwise.
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    forget_clients()
    client = api_client(settings.DEVBENCH_DOCKER_HOST, 30)
    assert client.base_url.startswith("http+docker://")
    assert client.trust_env is False
    assert client.ping() is True
