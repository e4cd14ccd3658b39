"""REST: the tenant's usage per day."""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from tenants.api import principal_of
from usage.schemas import UsageDayOut, UsageQuery
from usage.selectors import usage_list

router = Router(tags=["usage"])


@router.get("/usage", response=list[UsageDayOut], operation_id="usage_list")
def usage_get(request: HttpRequest, filters: Query[UsageQuery]) -> Any:
    """Per UTC day: workspace-seconds running (and paused), execs that ended and their run
    time, CPU time, volume storage. At most 366 days at once."""
    days = usage_list(actor=principal_of(request), since=filters.since, until=filters.until)
    return [d.as_dict() for d in days]
