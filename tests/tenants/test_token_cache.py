"""The per-process memory of verified API tokens and its revocation bound."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import AuthenticationFailed, PermissionDenied
from tenants import token_cache
from tenants.auth import authenticate_bearer
from tenants.models import ApiToken, Tenant

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> FakeClock:
    settings.DEVBENCH_TOKEN_CACHE_S = 5
    fake = FakeClock()
    monkeypatch.setattr(token_cache, "clock", fake)
    token_cache.clear()
    return fake


def cached(raw: str) -> Any:
    return authenticate_bearer(f"Bearer {raw}", cached=True)


def test_a_verified_token_is_answered_without_a_query(
    clock: FakeClock, token: Any, django_assert_num_queries: Any
) -> None:
    first = cached(token.raw)
    with django_assert_num_queries(0):
        again = cached(token.raw)
    assert again == first
    assert again.tenant is not first.tenant  # a private copy per request


def test_revocation_elsewhere_takes_effect_within_the_bound(clock: FakeClock, token: Any) -> None:
    cached(token.raw)
    # Another process revokes it: no signal reaches this one, only the database changes.
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    clock.now += 4.9
    assert cached(token.raw).token_id == token.pk
    clock.now += 0.2
    with pytest.raises(AuthenticationFailed) as excinfo:
        cached(token.raw)
    assert excinfo.value.code == "token_revoked"


def test_a_deactivated_tenant_elsewhere_is_refused_after_the_bound(
    clock: FakeClock, token: Any
) -> None:
    cached(token.raw)
    Tenant.objects.filter(pk=token.tenant_id).update(active=False)
    clock.now += 5.1
    with pytest.raises(PermissionDenied) as excinfo:
        cached(token.raw)
    assert excinfo.value.code == "tenant_inactive"


def test_revocation_in_this_process_is_immediate(clock: FakeClock, token: Any) -> None:
    from tenants.principal import operator_principal
    from tenants.services import api_token_revoke

    cached(token.raw)
    row = ApiToken.objects.get(pk=token.pk)
    api_token_revoke(actor=operator_principal(row.tenant), token=row)
    with pytest.raises(AuthenticationFailed) as excinfo:
        cached(token.raw)
    assert excinfo.value.code == "token_revoked"


def test_a_wrong_secret_is_never_answered_from_memory(clock: FakeClock, token: Any) -> None:
    cached(token.raw)
    forged = token.raw[:-1] + ("B" if token.raw[-1] != "B" else "C")
    with pytest.raises(AuthenticationFailed) as excinfo:
        cached(forged)
    assert excinfo.value.code == "token_invalid"


def test_never_past_the_tokens_expiry(clock: FakeClock, make_token: Any, settings: Any) -> None:
    settings.DEVBENCH_TOKEN_CACHE_S = 3600
    token = make_token(expires_at=timezone.now() + timedelta(seconds=600))
    cached(token.raw)
    clock.now += 500  # well inside the expiry, whatever the machine's load
    with CaptureQueriesContext(connection) as memory:
        cached(token.raw)
    clock.now += 200
    with CaptureQueriesContext(connection) as database:
        cached(token.raw)
    assert len(memory) == 0, memory.captured_queries
    assert len(database) >= 1  # verified again: its expiry is checked there


def test_zero_turns_the_cache_off(clock: FakeClock, settings: Any, token: Any) -> None:
    settings.DEVBENCH_TOKEN_CACHE_S = 0
    cached(token.raw)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    with pytest.raises(AuthenticationFailed):
        cached(token.raw)


def test_rest_requests_use_the_cache(
    clock: FakeClock, token: Any, django_assert_num_queries: Any
) -> None:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")
    assert client.get("/api/v1/me").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert client.get("/api/v1/me").status_code == 200  # within the bound
    clock.now += 6
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


def test_each_answer_is_a_private_copy_that_changes_nothing_cached(
    clock: FakeClock, token: Any
) -> None:
    first = cached(token.raw)
    name = first.tenant.name
    first.tenant.name = "changed by one request"
    first.tenant._state.fields_cache["probe"] = object()
    first.user.email = "changed@example.invalid"
    again = cached(token.raw)
    assert (again.tenant.name, again.tenant.pk) == (name, token.tenant.pk)
    assert "probe" not in again.tenant._state.fields_cache
    assert again.tenant._state is not first.tenant._state
    assert again.user.email != "changed@example.invalid"
    assert type(again.tenant) is type(first.tenant) and not again.tenant._state.adding
