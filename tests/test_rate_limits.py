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


@pytest.mark.django_db
def test_both_buckets_cost_one_redis_call_and_match_the_library(
    settings: Any, tenant: Any, make_token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both buckets are one script call, and what it counts is what ``limits`` itself reads
    (same keys, same windows): a drift in either would show here."""
    from limits import parse
    from redis import Redis

    from tenants import ratelimit

    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "3/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "50/minute"
    assert settings.DEVBENCH_RATE_LIMIT_STORAGE.startswith("redis://")  # the production path
    token = make_token(tenant)
    api = client_for(token)
    assert api.get("/api/v1/me").status_code == 200  # warm: token verified, script loaded

    calls: list[Any] = []
    real = Redis.execute_command

    def counting(self: Redis, *args: Any, **options: Any) -> Any:
        calls.append(args[0])
        return real(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counting)
    assert api.get("/api/v1/me").status_code == 200
    assert calls == ["EVALSHA"]
    monkeypatch.undo()

    strategy = ratelimit._limiter().strategy
    credential = f"credential:token:{token.prefix}"
    assert strategy.get_window_stats(parse("3/minute"), credential).remaining == 1
    tenant_stats = strategy.get_window_stats(parse("50/minute"), f"tenant:{tenant.pk}")
    assert tenant_stats.remaining == 50 - 2
    assert api.get("/api/v1/me").status_code == 200
    # Refused by its token's bucket: not charged to the tenant's.
    assert_limited(api.get("/api/v1/me"), "token")
    assert strategy.get_window_stats(parse("3/minute"), credential).remaining == 0
    tenant_stats = strategy.get_window_stats(parse("50/minute"), f"tenant:{tenant.pk}")
    assert tenant_stats.remaining == 50 - 3


@pytest.mark.django_db
def test_an_unreachable_redis_lets_requests_through(settings: Any, token: Any) -> None:
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "1/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "1/minute"
    settings.DEVBENCH_RATE_LIMIT_STORAGE = "redis://127.0.0.1:1/0"  # nothing listens there
    api = client_for(token)
    assert [api.get("/api/v1/me").status_code for _ in range(3)] == [200] * 3
