"""Raw docker-py doing what DevBench does for a workspace: the baseline of the benchmarks."""

from __future__ import annotations

import uuid
from typing import Any

IMAGE = "devbench/busybox:latest"
KEEPER = ["-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


class RawDocker:
    """The engine work each operation boils down to, with the same security options."""

    def __init__(self) -> None:
        import docker
        from django.conf import settings

        self.api = docker.APIClient(version="auto")
        self.labels = {"devbench.instance": settings.DEVBENCH_INSTANCE}

    def spawn(self, image: str = IMAGE) -> str:
        from docker.types import Mount

        name = f"bench-raw-{uuid.uuid4().hex[:10]}"
        self.api.create_volume(name=f"{name}-data", labels=self.labels)
        host = self.api.create_host_config(
            mem_limit=512 * 1024 * 1024,
            memswap_limit=512 * 1024 * 1024,
            nano_cpus=10**9,
            pids_limit=256,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            init=True,
            mounts=[Mount(target="/workspace", source=f"{name}-data", type="volume")],
        )
        created = self.api.create_container(
            image=image,
            entrypoint=["/bin/sh"],
            command=KEEPER,
            user="1000:1000",
            working_dir="/workspace",
            labels=self.labels,
            name=name,
            host_config=host,
            detach=True,
        )
        self.api.start(created["Id"])
        return str(created["Id"])

    def kill(self, container_id: str, *, stop_first: bool = False) -> None:
        name = self.api.inspect_container(container_id)["Name"].lstrip("/")
        if stop_first:  # as a graceful kill does: processes get SIGTERM first
            self.api.stop(container_id, timeout=5)
        self.api.remove_container(container_id, force=True)
        self.api.remove_volume(f"{name}-data", force=True)

    def exec_echo(self, container_id: str) -> bytes:
        exec_id = self.api.exec_create(container_id, ["echo", "hi"], user="1000:1000")["Id"]
        output: bytes = self.api.exec_start(exec_id)
        self.api.exec_inspect(exec_id)  # the exit code, as our exec_run reports it
        return output

    def stat(self, container_id: str, path: str) -> dict[str, Any]:
        stream, stat = self.api.get_archive(container_id, path)
        for _ in stream:  # drain: the engine sends the tar whatever we need
            pass
        return dict(stat)
