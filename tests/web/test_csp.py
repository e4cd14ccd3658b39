"""Web pages carry a Content-Security-Policy without inline scripts; the JSON API does not."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_pages_have_a_policy_without_inline_scripts(token: Any) -> None:
    page = Client().get("/accounts/login/")
    policy = page["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert b"<script>" not in page.content  # every script is a static file
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}").get("/api/v1/me")
    assert api.status_code == 200 and "Content-Security-Policy" not in api


def test_no_policy_is_built_for_the_excluded_api(
    token: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API is excluded: its responses skip building a policy they would not carry,
    pages still get theirs, and a report-only policy that covers the API still applies."""
    import csp.middleware

    built: list[bool] = []
    real = csp.middleware.build_policy

    def counting(*args: Any, **kwargs: Any) -> str:
        built.append(kwargs.get("report_only", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(csp.middleware, "build_policy", counting)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")
    assert api.get("/api/v1/me").status_code == 200 and built == []
    assert "Content-Security-Policy" in Client().get("/accounts/login/") and built
    built.clear()
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    answer = api.get("/api/v1/me")
    assert answer["Content-Security-Policy-Report-Only"] == "default-src 'self'"
    assert "Content-Security-Policy" not in answer and built
