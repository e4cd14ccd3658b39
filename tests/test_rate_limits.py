"""Rate limits per token and per tenant over REST (MCP and websockets: tests/e2e)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import client_for


def assert_limited(answer: Any, scope: str) -> None:
    assert answer.status_code == 429
    body = answer.json()
    assert body["code"] == "rate_limited" and body["extra"]["scope"] == scope
    assert int(answer.headers["Retry-After"]) == body["extra"]["retry_after_s"] >= 1


def count_redis_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Redis command this process sends from now on, by name."""
    from redis import Redis

    calls: list[str] = []
    real = Redis.execute_command

    def counting(self: Redis, *args: Any, **options: Any) -> Any:
        calls.append(args[0])
        return real(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", counting)
    return calls


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

    from tenants import ratelimit

    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "3/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "50/minute"
    assert settings.DEVBENCH_RATE_LIMIT_STORAGE.startswith("redis://")  # the production path
    token = make_token(tenant)
    api = client_for(token)
    assert api.get("/api/v1/me").status_code == 200  # warm: token verified, script loaded

    calls = count_redis_commands(monkeypatch)
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


def _principal(tenant: Any) -> Any:
    """A credential of its own (no key of an earlier run in Redis)."""
    import uuid

    from tenants.principal import Principal

    return Principal(
        user=None, tenant=tenant, scopes=frozenset(), kind="token", actor_id=f"token:{uuid.uuid4()}"
    )


def _admitted(principal: Any, requests: int) -> int:
    from core.errors import RateLimited
    from tenants.ratelimit import rate_limit_hit

    admitted = 0
    for _ in range(requests):
        try:
            rate_limit_hit(principal)
            admitted += 1
        except RateLimited:
            pass
    return admitted


@pytest.mark.django_db
def test_a_busy_credential_leases_tokens_and_the_limit_still_holds(
    settings: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far fewer Redis calls than requests, and exactly the limit admitted: leases shrink
    to single hits when the bucket has no room for a whole one."""
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "640/minute"  # leases of up to 20
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = ""
    calls = count_redis_commands(monkeypatch)
    principal = _principal(tenant)
    assert _admitted(principal, 600) == 600
    assert 30 <= calls.count("EVALSHA") <= 60  # about one per 20 requests
    assert _admitted(principal, 100) == 40  # the last 40 of 640, not one more


@pytest.mark.django_db
def test_two_processes_leasing_never_admit_more_than_the_limit(settings: Any, tenant: Any) -> None:
    """Each web process has its own leases; together they stay within the limit, and
    what they leased and never used is bounded by a lease each."""
    from tenants import ratelimit
    from tenants.rate_leases import LeasedTokens, lease_max

    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "1280/minute"  # leases of up to 40
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = ""
    limiter = ratelimit._limiter()
    processes = [LeasedTokens(), LeasedTokens()]
    principal = _principal(tenant)
    admitted = 0
    for turn in range(1500):
        object.__setattr__(limiter, "leases", processes[turn % 7 % 2])
        admitted += _admitted(principal, 1)
    assert 1280 - 2 * (lease_max(1280) - 1) <= admitted <= 1280


@pytest.mark.django_db
def test_a_burst_of_concurrent_requests_is_charged_about_what_it_sent(
    settings: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests of one credential arriving together in one process (threads of a web
    worker) find no leased token while the first lease is on its way: they must not each
    lease a full one. 200 requests of a 1200/minute credential all pass, cost the bucket
    about 200 hits, not its whole minute, and take a few script calls, not one each."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from limits.storage import RedisStorage

    from tenants import ratelimit
    from tenants.rate_leases import lease_max

    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "1200/minute"  # leases of up to 37
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = ""
    limiter = ratelimit._limiter()
    charge = ratelimit._charge

    charges: list[int] = []

    def slow_charge(*args: Any) -> list[int]:
        time.sleep(0.005)  # a Redis round trip long enough for requests to overlap
        charges.append(1)
        return charge(*args)

    monkeypatch.setattr(ratelimit, "_charge", slow_charge)
    principal = _principal(tenant)
    # Leases are sized from the rate seen: a few requests first, so the burst finds one.
    assert _admitted(principal, 3) == 3
    threads = 40
    start = threading.Barrier(threads)

    def burst(_: int) -> int:
        start.wait()
        return _admitted(principal, 5)

    with ThreadPoolExecutor(threads) as pool:
        admitted = sum(pool.map(burst, range(threads)))
    assert admitted == threads * 5
    # Requests waited for the lease on its way rather than each asking Redis.
    assert len(charges) <= 3 + 2 * threads * 5 // lease_max(1200), len(charges)
    item = ratelimit.parse("1200/minute")
    key = item.key_for(f"credential:{principal.actor_id}")
    storage = limiter.strategy.storage
    assert isinstance(storage, RedisStorage)
    previous, _, current, _ = storage.get_sliding_window(key, item.get_expiry())
    charged = previous + current  # a new key: both windows hold only this test's hits
    # Every request once, plus what the leases still hold: at most one lease per
    # refill this process made, and those are few.
    assert 203 <= charged <= 203 + 3 * lease_max(1200), charged


@pytest.mark.django_db
def test_a_request_refused_by_its_tenant_spends_no_leased_token(settings: Any, tenant: Any) -> None:
    from tenants import ratelimit

    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "6400/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "5/minute"
    principal = _principal(tenant)
    ratelimit._limiter().strategy.clear(ratelimit.parse("5/minute"), f"tenant:{tenant.pk}")
    assert _admitted(principal, 5) == 5
    leases = ratelimit._limiter().leases
    credential = f"token:6400 per 1 minute:credential:{principal.actor_id}"
    held = leases.held(credential)
    assert held > 0  # the credential is served from its lease; the tenant counted exactly
    assert_limited_hit(principal, "tenant")
    assert leases.held(credential) == held


def assert_limited_hit(principal: Any, scope: str) -> None:
    from core.errors import RateLimited
    from tenants.ratelimit import rate_limit_hit

    with pytest.raises(RateLimited) as refused:
        rate_limit_hit(principal)
    assert refused.value.extra["scope"] == scope
