"""django-csp's middleware, without building a policy no response will carry.

django-csp 4.0 builds both policies (enforced and report-only) for every
response and only then checks ``EXCLUDE_URL_PREFIXES``: on the JSON API
(excluded in settings) that was the largest single middleware cost of a
control read. Here a request excluded from both policies returns before that
work; everything else is the library's own code, unchanged.
"""

from __future__ import annotations

from csp.middleware import CheckableLazyObject, CSPMiddleware
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase


def _excluded_prefixes(setting: str) -> tuple[str, ...]:
    policy = getattr(settings, setting, None) or {}
    return tuple(policy.get("EXCLUDE_URL_PREFIXES", None) or ())


class ExcludingCSPMiddleware(CSPMiddleware):
    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        path = request.path_info
        # Read per request, as the library does (settings may change in tests). A prefix
        # must exclude the path from both policies: then neither header would be set.
        enforced = _excluded_prefixes("CONTENT_SECURITY_POLICY")
        report_only = _excluded_prefixes("CONTENT_SECURITY_POLICY_REPORT_ONLY")
        if (
            enforced
            and path.startswith(enforced)
            and (
                not getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
                or (report_only and path.startswith(report_only))
            )
        ):
            # What the library does last: a nonce asked for after the response is an error.
            if getattr(request, "_csp_nonce", None) is None:
                request.csp_nonce = CheckableLazyObject(  # type: ignore[attr-defined]
                    self._csp_nonce_post_response
                )
            return response
        return super().process_response(request, response)
