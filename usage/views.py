"""The usage page of a tenant: a chart and a table per day."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from tenants.principal import Principal
from tenants.web import tenant_view
from usage.selectors import usage_list

PERIODS = (7, 30, 90)


@require_GET
@tenant_view
def usage_page(request: HttpRequest, actor: Principal) -> HttpResponse:
    try:
        days = int(request.GET.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in PERIODS else 30
    until = timezone.now().date()
    usage = usage_list(actor=actor, since=until - timedelta(days=days - 1), until=until)
    rows = [{**u.as_dict(), "day": u.day.isoformat()} for u in usage]
    return render(
        request,
        "usage/usage.html",
        {"rows": list(reversed(rows)), "chart_rows": rows, "days": days, "periods": PERIODS},
    )
