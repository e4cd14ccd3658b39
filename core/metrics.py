"""``GET /metrics`` (Prometheus), for scrapers only.

Allowed when the request comes from a network in ``METRICS_ALLOWED_NETWORKS``
(default: loopback only), or carries ``Authorization: Bearer <METRICS_TOKEN>``
when a token is set. Anything else is ``403 metrics_forbidden``. Behind a
reverse proxy on the same host every request comes from loopback: set a token
and ``METRICS_ALLOWED_NETWORKS=`` (empty) there.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django_prometheus.exports import ExportToDjangoView

from core.errors import MetricsForbidden

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def metrics_allowed(*, remote_addr: str, authorization: str) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token):
            return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    allowed = metrics_allowed(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        authorization=request.headers.get("Authorization", ""),
    )
    if not allowed:
        refused = MetricsForbidden()
        return JsonResponse(refused.as_dict(), status=refused.http_status)
    response: HttpResponse = ExportToDjangoView(request)
    return response
