"""Container runtime drivers. Only this package imports ``docker``."""

from __future__ import annotations

import functools

from django.conf import settings
from django.utils.module_loading import import_string

from workspaces.runtime.base import RuntimeDriver


@functools.cache
def get_driver() -> RuntimeDriver:
    """The configured driver (``DEVBENCH_RUNTIME_DRIVER``, a dotted path), one per process."""
    driver_cls = import_string(settings.DEVBENCH_RUNTIME_DRIVER)
    driver: RuntimeDriver = driver_cls(
        base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=settings.DEVBENCH_DOCKER_TIMEOUT
    )
    return driver
