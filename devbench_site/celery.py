"""The Celery application (`celery -A devbench_site worker`).

In the embedded mode (no broker) every task still goes through
``apply_async``; ``DevBenchTask`` hands it to an in-process thread pool, so
the same task code runs off the request path in both modes.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")


class DevBenchTask(Task):
    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        from django.conf import settings

        if settings.CELERY_TASKS_IN_PROCESS:
            from devbench_site import tasks_inprocess

            return tasks_inprocess.submit(self, args or (), kwargs or {})
        return super().apply_async(args, kwargs, **options)


app = Celery("devbench_site", task_cls=DevBenchTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids into task headers, logs and metrics for every worker (devbench_site.tasks_context).
import devbench_site.tasks_context  # noqa: E402,F401


@worker_ready.connect
def _freeze_loaded_objects(**_: Any) -> None:
    # The runners' threads stall for every full garbage collection (core.process_memory).
    from core.process_memory import freeze_loaded_objects

    freeze_loaded_objects()
