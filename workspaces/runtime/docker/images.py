"""Images on the Docker Engine: snapshot capture (pause, copy, commit), pull, push, removal."""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import re
import time
from collections.abc import Generator, Iterable
from typing import Any

import docker

from core.errors import ContainerGone, EngineError, ImageNotFound
from workspaces.runtime.base import (
    ArchiveReader,
    BuildSpec,
    CaptureSpec,
    ImageInfo,
    PullProgress,
    PullReporter,
    RegistryAuth,
    RegistryAuthFailed,
    RegistryUnreachable,
    RuntimeImages,
    TemplateBuildFailed,
    TemplateBuildTimeout,
)
from workspaces.runtime.docker.errors import translated

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1024 * 1024
_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_AUTH_WORDS = ("unauthorized", "authentication required", "no basic auth", "denied")
_MISSING_WORDS = ("manifest unknown", "not found", "name unknown")


def _split(ref: str) -> tuple[str, str | None]:
    """(repository, tag or digest) as the engine's pull/push calls take them."""
    if "@" in ref:
        repository, digest = ref.split("@", 1)
        return repository, digest
    head, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return ref, "latest"


def _auth_config(auth: RegistryAuth | None) -> dict[str, str] | None:
    return None if auth is None else {"username": auth.username, "password": auth.password}


def _registry_error(ref: str, message: str, *, host: str) -> EngineError:
    lowered = message.lower()
    if any(word in lowered for word in _AUTH_WORDS):
        return RegistryAuthFailed(
            f"The registry {host} refused the credentials for '{ref}': check the registry's "
            "username and password.",
            extra={"image": ref, "registry": host},
        )
    if any(word in lowered for word in _MISSING_WORDS):
        missing = ImageNotFound(f"Image '{ref}' is not in the registry {host}.", image=ref)
        missing.extra["registry"] = host
        return missing
    return RegistryUnreachable(
        f"The registry {host} failed for '{ref}': {message}",
        extra={"image": ref, "registry": host},
    )


_LAYER_DONE = ("Pull complete", "Pushed", "Layer already exists", "Already exists")
# Statuses the engine reports per layer of a pull (the others name the tag or the image).
_LAYER_STATUSES = frozenset(
    {
        "Pulling fs layer",
        "Waiting",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        *_LAYER_DONE,
    }
)


class _Layers:
    """Per-layer state of a pull, summed into a PullProgress."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.sizes: dict[str, tuple[int, int]] = {}  # layer: (bytes done, bytes total)
        self.done: set[str] = set()

    def update(self, event: dict[str, Any]) -> bool:
        """Record one event; True if it was about a layer."""
        status, layer = str(event.get("status") or ""), str(event.get("id") or "")
        if not layer or status not in _LAYER_STATUSES:
            return False
        current, total = self.sizes.get(layer, (0, 0))
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            current, total = int(detail.get("current") or 0), int(detail["total"])
        elif status in ("Verifying Checksum", "Download complete", "Extracting", "Pull complete"):
            current = total
        self.sizes[layer] = (current, total)
        if status in _LAYER_DONE:
            self.done.add(layer)
        return True

    def progress(self) -> PullProgress:
        return PullProgress(
            image=self.ref,
            layers_total=len(self.sizes),
            layers_done=len(self.done),
            bytes_total=sum(total for _, total in self.sizes.values()),
            bytes_done=sum(current for current, _ in self.sizes.values()),
        )


def _consume(
    ref: str,
    events: Iterable[dict[str, Any]],
    *,
    host: str,
    verb: str,
    progress: PullReporter | None = None,
) -> list[str]:
    """Read a pull/push progress stream to its end: its status lines; raise its error."""
    statuses: list[str] = []
    layers = _Layers(ref)
    for event in events:
        if "error" in event:
            raise _registry_error(ref, str(event.get("error")), host=host)
        status = str(event.get("status") or "")
        if layers.update(event) and progress is not None:
            progress(layers.progress())
        if status in _LAYER_DONE:
            logger.info(
                "%s %s: layer %s %s (%d done)", verb, ref, event.get("id"), status, len(layers.done)
            )
        statuses.append(status)
    return statuses


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
                # Not the instance's labels: garbage collection must not take the helper
                # away mid-capture. The image gets spec.labels at commit.
                labels={"devbench.capture": spec.tag},
                network_disabled=True,
                host_config=api.create_host_config(network_mode="none"),
            )["Id"]
        try:
            self._copy_paused(spec, helper)
            ref = f"{spec.repository}:{spec.tag}"
            with translated(engine_url=self.base_url, container_id=helper):
                api.commit(
                    helper, repository=spec.repository, tag=spec.tag, conf={"Labels": spec.labels}
                )
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

    def image_pull(
        self, ref: str, *, auth: RegistryAuth | None = None, progress: PullReporter | None = None
    ) -> ImageInfo:
        repository, tag = _split(ref)
        host = repository.split("/", 1)[0]
        try:
            with translated(engine_url=self.base_url, image=ref):
                events = self.api.pull(
                    repository, tag=tag, stream=True, decode=True, auth_config=_auth_config(auth)
                )
                _consume(ref, events, host=host, verb="pull", progress=progress)
        except EngineError as exc:
            if isinstance(exc, RegistryAuthFailed | RegistryUnreachable):
                raise
            # The engine answers a refused pull before streaming: classify its own message.
            raise _registry_error(ref, str(exc.__cause__ or exc.message), host=host) from exc
        with translated(engine_url=self.base_url, image=ref):
            return image_info(self.api.inspect_image(ref))

    def image_push(self, source: str, ref: str, *, auth: RegistryAuth | None = None) -> str:
        repository, tag = _split(ref)
        host = repository.split("/", 1)[0]
        with translated(engine_url=self.base_url, image=source):
            self.api.tag(source, repository, tag=tag)
        try:
            with translated(engine_url=self.base_url, image=ref):
                events = self.api.push(
                    repository, tag=tag, stream=True, decode=True, auth_config=_auth_config(auth)
                )
                statuses = _consume(ref, events, host=host, verb="push")
        finally:
            with contextlib.suppress(EngineError), translated(engine_url=self.base_url, image=ref):
                self.api.remove_image(ref, noprune=True)
        for status in reversed(statuses):
            if match := _DIGEST_RE.search(status):
                return match.group(1)
        raise RegistryUnreachable(
            f"The registry {host} did not report a digest for '{ref}'.", extra={"image": ref}
        )

    def image_build(self, spec: BuildSpec) -> Generator[str, None, str]:
        ref = f"{spec.repository}:{spec.tag}"
        deadline = time.monotonic() + spec.timeout_s
        # The build's own client: a long build must not hold the shared pool's timeout.
        client = docker.APIClient(base_url=self.base_url, version="auto", timeout=spec.timeout_s)
        try:
            with translated(engine_url=self.base_url, image=ref):
                events = client.build(
                    fileobj=io.BytesIO(spec.context),
                    custom_context=True,
                    tag=ref,
                    labels=spec.labels,
                    network_mode=spec.network_mode,
                    pull=False,  # FROM names images already on the node (or pulled first)
                    rm=True,
                    forcerm=True,
                    decode=True,
                    container_limits={"memory": spec.memory_bytes, "memswap": spec.memory_bytes},
                )
                for event in events:
                    if time.monotonic() > deadline:
                        raise TemplateBuildTimeout(
                            f"The build ran longer than {spec.timeout_s} s and was stopped."
                        )
                    if "error" in event:
                        message = str(event.get("error") or "").strip()
                        yield message
                        raise TemplateBuildFailed(f"The build failed: {message}")
                    text = str(event.get("stream") or event.get("status") or "")
                    if text:
                        yield text.rstrip("\n")
        finally:
            client.close()
        with translated(engine_url=self.base_url, image=ref):
            return str(self.api.inspect_image(ref)["Id"])

    def image_remove(self, ref: str) -> None:
        try:
            with translated(engine_url=self.base_url, image=ref):
                self.api.remove_image(ref, noprune=False)
        except ImageNotFound:
            pass
