"""Fixtures for identity tests: a real OpenID provider process and its wiring into settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from tenants.oidc import reset_caches
from tests.factories import MembershipRuleFactory, TenantFactory
from tests.identity.oidc import PROVIDER_ID, Provider, start_provider


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[Provider]:
    """The test OpenID provider on 127.0.0.1 (node + oidc-provider), once per session."""
    provider = start_provider()
    yield provider
    provider.stop()


def configure(settings: Any, *apps: dict[str, Any]) -> None:
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": list(apps)}}
    reset_caches()
    cache.clear()


@pytest.fixture(autouse=True)
def _forget_providers() -> Iterator[None]:
    """No provider list, discovery document or key set outlives the test that set it up."""
    yield
    reset_caches()


@pytest.fixture
def oidc(settings: Any, oidc_provider: Provider, db: Any) -> Provider:
    """Django trusts the test provider (sign-in and bearer tokens); caches start empty."""
    configure(settings, oidc_provider.app_config())
    return oidc_provider


@pytest.fixture
def acme_beta(db: Any) -> dict[str, Any]:
    """Two tenants and the group rules of the test provider."""
    acme, beta = TenantFactory(slug="acme"), TenantFactory(slug="beta")
    for value, tenant, role in (
        ("acme-admins", acme, "admin"),
        ("acme-viewers", acme, "viewer"),
        ("beta-users", beta, "member"),
    ):
        MembershipRuleFactory(
            provider_id=PROVIDER_ID, claim="groups", value=value, tenant=tenant, role=role
        )
    return {"acme": acme, "beta": beta}
