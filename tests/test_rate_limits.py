"""Rate limits per token and per tenant over REST (MCP and websockets: tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import client_for


def assert_limited(answer: Any, scope: str) -> None:
    assert answer.status_code == 429
    body = answer.json()
    assert body["code"] == "rate_limited" and body["extra"]["scope"] == scope
    assert int(answer.headers["Retry-After"]) == body["extra"]["retry_after_s"] >= 1


@pytest.mark.django_db
def test_rest_per_token_then_per_tenant(settings: Any, tenant: Any, make_token: Any) -> None:
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "3/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "5/minute"
    first, second = client_for(make_token(tenant)), client_for(make_token(tenant))
    assert [first.get("/api/v1/me").status_code for _ in range(3)] == [200] * 3
    assert_limited(first.get("/api/v1/me"), "token")
    # Another token of the tenant has its own bucket, until the tenant's is empty.
    assert [second.get("/api/v1/me").status_code for _ in range(2)] == [200] * 2
    assert_limited(second.get("/api/v1/me"), "tenant")
    # Another tenant is not affected.
    assert client_for(make_token()).get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_unlimited_when_the_settings_are_empty(settings: Any, token: Any) -> None:
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = ""
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = ""
    api = client_for(token)
    assert {api.get("/api/v1/me").status_code for _ in range(20)} == {200}
