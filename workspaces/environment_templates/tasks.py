"""Template builds: a thin task on the template's node queue."""

from __future__ import annotations

from celery import shared_task

from workspaces.environment_templates.services import template_build_run


@shared_task(name="templates.build", acks_late=True, time_limit=3600)
def template_build_task(template_id: int) -> None:
    template_build_run(template_id=template_id)
