"""The audit page of a tenant (owners and admins): filters, pages, JSON lines export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET

from tenants.audit import audit_event_json
from tenants.errors import InvalidOutcome, InvalidTime
from tenants.principal import Principal
from tenants.selectors import audit_event_list
from tenants.web import tenant_view

PAGE_SIZE = 50
_FILTERS = ("actor", "action", "outcome", "since", "until", "target_id", "request_id")


def _when(value: str, field: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None and (day := parse_date(value)) is not None:
        parsed = datetime(day.year, day.month, day.day)
    if parsed is None:
        raise InvalidTime(field=field)
    return parsed


def _events(request: HttpRequest, actor: Principal) -> tuple[Any, dict[str, str]]:
    given = {name: request.GET.get(name, "").strip() for name in _FILTERS}
    if given["outcome"] not in ("", "success", "denied", "error"):
        raise InvalidOutcome()
    events = audit_event_list(
        actor=actor,
        actor_id=given["actor"] or None,
        action=given["action"] or None,
        outcome=given["outcome"] or None,
        since=_when(given["since"], "since"),
        until=_when(given["until"], "until"),
        target_id=given["target_id"] or None,
        request_id=given["request_id"] or None,
    )
    return events, given


@require_GET
@tenant_view
def audit_page(request: HttpRequest, actor: Principal) -> HttpResponse:
    events, given = _events(request, actor)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = "&".join(f"{k}={v}" for k, v in given.items() if v)
    return render(request, "tenants/audit.html", {"page": page, "filters": given, "query": query})


@require_GET
@tenant_view
def audit_export(request: HttpRequest, actor: Principal) -> StreamingHttpResponse:
    events, _ = _events(request, actor)
    response = StreamingHttpResponse(
        (audit_event_json(e) + "\n" for e in events.iterator(chunk_size=500)),
        content_type="application/x-ndjson",
    )
    response["Content-Disposition"] = f'attachment; filename="audit-{actor.tenant.slug}.jsonl"'
    return response
