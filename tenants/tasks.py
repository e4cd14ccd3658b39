"""Periodic identity jobs (thin: call one service)."""

from __future__ import annotations

from celery import shared_task

from tenants.services import audit_event_purge


@shared_task(name="tenants.audit_purge", queue="default", ignore_result=True, acks_late=True)
def audit_purge() -> int:
    """Delete audit events older than AUDIT_RETENTION_DAYS (safe to re-run)."""
    return audit_event_purge()
