"""Container lifecycle on the Docker Engine (low-level API: one call per action)."""

from __future__ import annotations

from typing import Any

import docker
from docker.types import Mount

from core.errors import ContainerGone, EngineConflict
from workspaces.runtime.base import (
    ContainerInfo,
    ContainerSpec,
    ImageInfo,
    RuntimeLifecycle,
    VolumeInfo,
)
from workspaces.runtime.docker.client import api_client
from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.images import image_info
from workspaces.runtime.docker.quick import QuickEngine, quick_engine


def container_info(raw: dict[str, Any]) -> ContainerInfo:
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    return ContainerInfo(
        id=raw["Id"],
        name=(raw.get("Name") or "").lstrip("/"),
        status=state.get("Status", "unknown"),
        running=bool(state.get("Running")),
        labels=dict(config.get("Labels") or {}),
        image_id=raw.get("Image", ""),
        exit_code=state.get("ExitCode"),
        started_at=state.get("StartedAt"),
        raw=raw,
    )


class DockerLifecycle(RuntimeLifecycle):
    def __init__(self, *, base_url: str, timeout_s: int = 60) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s

    @property
    def api(self) -> docker.APIClient:
        return api_client(self.base_url, self.timeout_s)

    @property
    def quick(self) -> QuickEngine | None:
        return quick_engine(self.base_url, self.timeout_s, lambda: str(self.api.api_version))

    def ping(self) -> None:
        with translated(engine_url=self.base_url):
            self.api.ping()

    def image_inspect(self, ref: str) -> ImageInfo:
        with translated(engine_url=self.base_url, image=ref):
            raw = self.api.inspect_image(ref)
        return image_info(raw)

    def volume_create(self, name: str, labels: dict[str, str]) -> None:
        with translated(engine_url=self.base_url):
            self.api.create_volume(name=name, labels=labels)

    def volume_remove(self, name: str) -> None:
        try:
            with translated(engine_url=self.base_url, container_id=name):
                self.api.remove_volume(name, force=True)
        except ContainerGone:
            pass

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        host_config = self.api.create_host_config(
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,  # no swap: the memory limit is the limit
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            network_mode=spec.network_mode,
            read_only=spec.read_only_rootfs,
            tmpfs=dict(spec.tmpfs),
            cap_drop=list(spec.cap_drop),
            cap_add=list(spec.cap_add) or None,
            security_opt=list(spec.security_opt),
            init=spec.init,
            mounts=[
                Mount(
                    target=m.target,
                    source=m.source,
                    type="volume",
                    read_only=m.read_only,
                    labels=m.volume_labels or None,
                )
                for m in spec.mounts
            ],
            restart_policy={"Name": spec.restart_policy} if spec.restart_policy else None,
            runtime=spec.runtime,
            cgroupns=spec.cgroupns,
        )
        with translated(engine_url=self.base_url, image=spec.image):
            created = self.api.create_container(
                image=spec.image,
                command=spec.command,
                entrypoint=spec.entrypoint,
                user=spec.user,
                environment=spec.env,
                working_dir=spec.working_dir,
                labels=spec.labels,
                name=spec.name,
                host_config=host_config,
                detach=True,
            )
        # What the engine was just asked to make: no inspect round trip on a spawn's path.
        return ContainerInfo(
            id=created["Id"],
            name=spec.name,
            status="created",
            running=False,
            labels=dict(spec.labels),
            image_id=spec.image,
        )

    def start(self, container_id: str) -> None:
        with translated(engine_url=self.base_url, container_id=container_id):
            self.api.start(container_id)

    def stop(self, container_id: str, *, timeout_s: int = 10) -> None:
        with translated(engine_url=self.base_url, container_id=container_id):
            self.api.stop(container_id, timeout=timeout_s)

    def remove(self, container_id: str, *, force: bool = True) -> None:
        try:
            with translated(engine_url=self.base_url, container_id=container_id):
                self.api.remove_container(container_id, force=force, v=False)
        except ContainerGone:
            pass

    def pause(self, container_id: str) -> None:
        try:
            with translated(engine_url=self.base_url, container_id=container_id):
                self.api.pause(container_id)
        except EngineConflict:
            if self.inspect(container_id).status != "paused":
                raise

    def unpause(self, container_id: str) -> None:
        try:
            with translated(engine_url=self.base_url, container_id=container_id):
                self.api.unpause(container_id)
        except EngineConflict:
            if self.inspect(container_id).status == "paused":
                raise

    def restart_policy_set(self, container_id: str, policy: str | None) -> None:
        with translated(engine_url=self.base_url, container_id=container_id):
            self.api.update_container(
                container_id, restart_policy={"Name": policy or "no", "MaximumRetryCount": 0}
            )

    def inspect(self, container_id: str) -> ContainerInfo:
        with translated(engine_url=self.base_url, container_id=container_id):
            return container_info(self.api.inspect_container(container_id))

    def list_by_labels(self, labels: dict[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with translated(engine_url=self.base_url):
            summaries = self.api.containers(all=True, filters=filters)
        infos = []
        for summary in summaries:
            try:
                infos.append(self.inspect(summary["Id"]))
            except ContainerGone:
                continue  # removed between list and inspect
        return infos

    def volume_sizes(self) -> dict[str, int]:
        # The engine walks every volume to size it: call this from periodic jobs only.
        with translated(engine_url=self.base_url):
            answer = self.api.df()
        return {
            v["Name"]: int((v.get("UsageData") or {}).get("Size") or 0)
            for v in (answer or {}).get("Volumes") or []
            if (v.get("UsageData") or {}).get("Size", -1) >= 0
        }

    def volume_list_by_labels(self, labels: dict[str, str]) -> list[VolumeInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with translated(engine_url=self.base_url):
            answer = self.api.volumes(filters=filters)
        return [
            VolumeInfo(name=v["Name"], labels=dict(v.get("Labels") or {}))
            for v in (answer or {}).get("Volumes") or []
        ]
