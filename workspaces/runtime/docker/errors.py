"""Translate docker-py / requests failures into DevBench engine errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from core import metrics
from core.errors import (
    ContainerGone,
    EngineConflict,
    EngineError,
    EngineRefused,
    EngineTimeout,
    EngineUnavailable,
    ImageNotFound,
)


def _engine_message(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


@contextmanager
def translated(
    *, engine_url: str, container_id: str | None = None, image: str | None = None
) -> Iterator[None]:
    """Run engine calls, re-raising failures as specific, actionable errors (counted by
    kind in ``devbench_engine_errors_total``)."""
    try:
        with _translating(engine_url=engine_url, container_id=container_id, image=image):
            yield
    except EngineError as exc:
        metrics.ENGINE_ERRORS.labels(kind=exc.code).inc()
        raise


@contextmanager
def _translating(*, engine_url: str, container_id: str | None, image: str | None) -> Iterator[None]:
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        name = image or "the image"
        raise ImageNotFound(
            f"Image '{name}' is not present on the engine and no registry is reachable: "
            "build or load it on the engine host (scripts/build-images builds the "
            "devbench/* images).",
            image=image,
        ) from exc
    except docker.errors.NotFound as exc:
        if image is not None and container_id is None:
            raise ImageNotFound(
                f"Image '{image}' is not present on the engine.", image=image
            ) from exc
        raise ContainerGone(
            f"Container {container_id or ''} no longer exists on the engine "
            "(removed outside DevBench?); reconcile to update its state.",
            container_id=container_id,
        ) from exc
    except docker.errors.APIError as exc:
        status = exc.status_code or 500
        refused = EngineConflict if status == 409 else EngineRefused
        raise refused(
            f"The container engine refused the request: {_engine_message(exc)}",
            engine_status=status,
            container_id=container_id,
        ) from exc
    except (requests.exceptions.Timeout, TimeoutError) as exc:
        raise EngineTimeout(
            f"The container engine at {engine_url} did not answer in time; it may be overloaded.",
        ) from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise EngineUnavailable(
            f"Cannot reach the container engine at {engine_url}: is dockerd running "
            "and is DOCKER_HOST right?",
        ) from exc
