"""Images on the Docker Engine: snapshot capture (pause, copy, commit) and removal."""

from __future__ import annotations

import contextlib
import posixpath
from typing import Any

import docker

from devbench_site.errors import ContainerGone, EngineError, ImageNotFound
from workspaces.runtime.base import (
    ArchiveReader,
    CaptureSpec,
    ImageInfo,
    RuntimeImages,
)
from workspaces.runtime.docker.errors import translated

_COPY_CHUNK = 1024 * 1024


def image_info(raw: dict[str, Any]) -> ImageInfo:
    config = raw.get("Config") or {}
    return ImageInfo(
        id=raw["Id"],
        tags=tuple(raw.get("RepoTags") or ()),
        digests=tuple(raw.get("RepoDigests") or ()),
        labels=dict(config.get("Labels") or {}),
        size=int(raw.get("Size") or 0),
    )


class DockerImages(RuntimeImages):
    base_url: str

    @property
    def api(self) -> docker.APIClient:  # provided by DockerLifecycle
        raise NotImplementedError

    def archive_get(self, container_id: str, path: str) -> ArchiveReader:  # DockerArchive
        raise NotImplementedError

    def snapshot_capture(self, spec: CaptureSpec) -> ImageInfo:
        api = self.api
        # The copy lands in a never-started helper container of the same image, which
        # is then committed: the workspace's own (read-only) root is never touched.
        with translated(engine_url=self.base_url, image=spec.base_image):
            helper = api.create_container(
                image=spec.base_image,
                command=["/bin/true"],
                labels=spec.labels,
                network_disabled=True,
                host_config=api.create_host_config(network_mode="none"),
            )["Id"]
        try:
            self._copy_paused(spec, helper)
            ref = f"{spec.repository}:{spec.tag}"
            with translated(engine_url=self.base_url, container_id=helper):
                api.commit(helper, repository=spec.repository, tag=spec.tag)
            with translated(engine_url=self.base_url, image=ref):
                return image_info(api.inspect_image(ref))
        finally:
            with (
                contextlib.suppress(EngineError),
                translated(engine_url=self.base_url, container_id=helper),
            ):
                api.remove_container(helper, force=True, v=True)

    def _copy_paused(self, spec: CaptureSpec, helper: str) -> None:
        api = self.api
        with translated(engine_url=self.base_url, container_id=spec.container_id):
            api.pause(spec.container_id)
        try:
            with self.archive_get(spec.container_id, spec.path) as reader:
                chunks = iter(lambda: reader.read(_COPY_CHUNK), b"")
                with translated(engine_url=self.base_url, container_id=helper):
                    response = api._put(
                        api._url("/containers/{0}/archive", helper),
                        params={"path": posixpath.dirname(spec.path) or "/"},
                        data=chunks,
                    )
                    api._raise_for_status(response)
        finally:
            # Whatever happened to the copy, the workspace continues.
            with (
                contextlib.suppress(ContainerGone),
                translated(engine_url=self.base_url, container_id=spec.container_id),
            ):
                api.unpause(spec.container_id)

    def image_remove(self, ref: str) -> None:
        try:
            with translated(engine_url=self.base_url, image=ref):
                self.api.remove_image(ref, noprune=False)
        except ImageNotFound:
            pass
