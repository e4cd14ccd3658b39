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
