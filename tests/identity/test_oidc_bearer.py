"""OIDC access tokens as bearer credentials, against the real provider.

REST is exercised over HTTP (Django test client). MCP and websockets are not on
main yet; their contract is ``authenticate_bearer(header, tenant_slug=slug)``,
exercised directly below (``test_url_tenant_*``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from django.test import Client

from core.errors import NotFound
from tenants.auth import authenticate_bearer
from tenants.models import AuditEvent
from tests.bodies import error_body
from tests.factories import ApiTokenFactory, TenantFactory
from tests.identity.conftest import configure
from tests.identity.oidc import (
    OTHER_AUDIENCE,
    Provider,
    cli_tokens,
    new_signing_key,
    start_provider,
)

pytestmark = pytest.mark.django_db


def rest(token: str, tenant: str | None = None) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if tenant:
        headers["HTTP_X_DEVBENCH_TENANT"] = tenant
    return Client(**headers).get("/api/v1/me")


@pytest.fixture
def alice_jwt(oidc: Provider, acme_beta: Any) -> str:
    return str(cli_tokens(oidc, login="alice")["access_token"])


def test_provider_jwt_is_accepted_on_rest_with_tenant_header(alice_jwt):
    assert jwt.get_unverified_header(alice_jwt)["typ"] == "at+jwt"
    response = rest(alice_jwt, "acme")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "oidc"
    assert body["tenant"]["slug"] == "acme"
    assert body["scopes"] == ["admin", "read", "write"]  # admin role
    assert rest(alice_jwt, "beta").json()["scopes"] == ["read", "write"]  # member role


def test_several_tenants_without_header_is_tenant_required(alice_jwt):
    response = rest(alice_jwt)
    assert response.status_code == 400
    assert response.json()["code"] == "tenant_required"
    assert response.json()["extra"]["tenants"] == ["acme", "beta"]


def test_single_tenant_user_needs_no_header(oidc, acme_beta):
    token = cli_tokens(oidc, login="bob")["access_token"]
    body = rest(token).json()
    assert body["tenant"]["slug"] == "acme" and body["scopes"] == ["read"]  # viewer


def test_no_tenant_at_all_is_tenant_required(oidc, acme_beta):
    token = cli_tokens(oidc, login="carol")["access_token"]
    response = rest(token)
    assert response.status_code == 400 and response.json()["code"] == "tenant_required"


def test_foreign_and_missing_tenant_look_the_same(alice_jwt):
    TenantFactory(slug="foreign")
    foreign, missing = rest(alice_jwt, "foreign"), rest(alice_jwt, "nope")
    assert foreign.status_code == missing.status_code == 404
    assert error_body(foreign) == error_body(missing)
    assert foreign.json()["code"] == "tenant_not_found"
    denied = AuditEvent.objects.get(action="auth.bearer", tenant__slug="foreign")
    assert denied.outcome == "denied" and denied.error_code == "tenant_not_found"


def test_token_scope_claim_narrows_role_scopes(oidc, acme_beta):
    token = cli_tokens(oidc, login="alice", scope="openid devbench:read")["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "devbench:read"
    assert rest(token, "acme").json()["scopes"] == ["read"]


def test_url_tenant_is_used_as_given_by_mcp_and_websockets(alice_jwt):
    principal = authenticate_bearer(f"Bearer {alice_jwt}", tenant_slug="beta")
    assert principal.kind == "oidc" and principal.tenant.slug == "beta"
    assert principal.extra["subject"] == "alice"
    with pytest.raises(NotFound) as exc:
        authenticate_bearer(f"Bearer {alice_jwt}", tenant_slug="gamma")
    assert exc.value.code == "tenant_not_found"


def test_api_tokens_still_work_and_honour_the_tenant_header(db):
    token = ApiTokenFactory()
    assert rest(token.raw, token.tenant.slug).status_code == 200
    other = TenantFactory()
    assert rest(token.raw, other.slug).json()["code"] == "tenant_not_found"


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_expired_token_signed_by_the_provider_is_token_expired(oidc, acme_beta, alice_jwt):
    now = int(time.time())
    expired = oidc.mint({"sub": "alice", "iat": now - 600, "exp": now - 120})
    assert _code(rest(expired, "acme")) == (401, "token_expired")


def test_forged_signature_is_token_invalid(oidc, acme_beta, alice_jwt):
    other_key, _ = new_signing_key(oidc.kid)
    forged = oidc.mint({"sub": "alice"}, key=other_key)  # same kid, wrong key
    assert _code(rest(forged, "acme")) == (401, "token_invalid")
    unknown_kid = oidc.mint({"sub": "alice"}, key=other_key, kid="not-a-provider-key")
    assert _code(rest(unknown_kid, "acme")) == (401, "token_invalid")


def test_wrong_audience_is_token_audience(oidc, acme_beta):
    real = cli_tokens(oidc, login="alice", resource=OTHER_AUDIENCE, scope="openid devbench:read")
    assert jwt.decode(real["access_token"], options={"verify_signature": False})["aud"] == (
        OTHER_AUDIENCE
    )
    assert _code(rest(real["access_token"], "acme")) == (401, "token_audience")
    minted = oidc.mint({"sub": "alice", "aud": "https://elsewhere.test"})
    assert _code(rest(minted, "acme")) == (401, "token_audience")


def test_wrong_issuer_is_token_invalid_even_with_the_right_key(oidc, acme_beta):
    # Signed by the provider's own key: only the issuer is wrong.
    wrong = oidc.mint({"sub": "alice", "iss": "http://127.0.0.1:9/not-our-provider"})
    assert _code(rest(wrong, "acme")) == (401, "token_invalid")


def test_unsafe_algorithms_and_id_tokens_are_refused(oidc, acme_beta):
    now = int(time.time())
    claims = {"iss": oidc.issuer, "aud": "https://devbench.test/api", "sub": "alice"}
    claims |= {"exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": oidc.kid})  # type: ignore[arg-type]
    hmac = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": oidc.kid})
    for token in (unsigned, hmac, "a.b.c"):
        assert _code(rest(token, "acme")) == (401, "token_invalid"), token
    # An ID token is for the client (aud = its client id), not for the API.
    id_token = cli_tokens(oidc, login="alice")["id_token"]
    assert _code(rest(id_token, "acme")) == (401, "token_audience")
    # Even one whose audience matches (api_audience = the client id) is refused.
    looks_like_id_token = oidc.mint({"sub": "alice", "nonce": "n-0S6_WzA2Mj"})
    assert _code(rest(looks_like_id_token, "acme")) == (401, "token_invalid")


def test_refusals_are_audited_in_the_requested_tenant(oidc, acme_beta):
    expired = oidc.mint({"sub": "alice", "exp": int(time.time()) - 120})
    rest(expired, "acme")
    event = AuditEvent.objects.get(action="auth.bearer", error_code="token_expired")
    assert event.tenant == acme_beta["acme"]
    assert event.outcome == "denied" and event.actor_kind == "anonymous"
    assert event.request_id  # the HTTP request id ties it to the web log
    assert event.details["requested_tenant"] == "acme"
    assert expired not in str(event.details)


def test_inactive_user_is_refused(alice_jwt):
    from django.contrib.auth import get_user_model

    assert rest(alice_jwt, "acme").status_code == 200
    get_user_model().objects.filter(socialaccount__uid="alice").update(is_active=False)
    assert _code(rest(alice_jwt, "acme")) == (401, "token_invalid")


def test_opaque_token_is_resolved_through_userinfo(oidc, acme_beta):
    tokens = cli_tokens(oidc, login="alice", resource=None, scope="openid profile email groups")
    opaque = tokens["access_token"]
    assert opaque.count(".") != 2  # not a JWT
    response = rest(opaque, "beta")
    assert response.status_code == 200, response.content
    assert response.json()["kind"] == "oidc" and response.json()["tenant"]["slug"] == "beta"
    # Same person as with a JWT: one user, linked by subject.
    jwt_token = cli_tokens(oidc, login="alice")["access_token"]
    assert rest(jwt_token, "beta").json()["user"]["id"] == response.json()["user"]["id"]


def test_unknown_opaque_token_is_token_invalid(oidc, acme_beta):
    assert _code(rest("definitely-not-a-token-the-provider-issued", "acme")) == (
        401,
        "token_invalid",
    )


# --- Caching and an unreachable provider ------------------------------------------------


@pytest.fixture
def lone_provider(settings: Any, acme_beta: Any) -> Iterator[Provider]:
    """A provider of this test only, so it can be stopped."""
    provider = start_provider()
    configure(settings, provider.app_config())
    yield provider
    provider.stop()


@pytest.fixture
def jwks_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each JWKS download (the real fetch still runs)."""
    calls: list[str] = []
    original = jwt.PyJWKClient.fetch_data

    def counting(self: jwt.PyJWKClient) -> Any:
        calls.append(self.uri)
        return original(self)

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", counting)
    return calls


def test_cached_keys_need_no_provider(lone_provider, jwks_fetches):
    token = cli_tokens(lone_provider, login="alice")["access_token"]
    assert rest(token, "acme").status_code == 200
    assert rest(token, "acme").status_code == 200
    assert len(jwks_fetches) == 1  # no network call per request once the key is cached
    lone_provider.stop()
    assert rest(token, "acme").status_code == 200


def test_unknown_kid_refreshes_keys_once_per_cooldown(lone_provider, jwks_fetches, settings):
    token = cli_tokens(lone_provider, login="alice")["access_token"]
    assert rest(token, "acme").status_code == 200
    other_key, _ = new_signing_key("rotated")
    rotated = lone_provider.mint({"sub": "alice"}, key=other_key, kid="rotated")
    assert _code(rest(rotated, "acme")) == (401, "token_invalid")
    assert _code(rest(rotated, "acme")) == (401, "token_invalid")
    assert len(jwks_fetches) == 1  # within the cooldown: no refetch storm from forged kids
    settings.OIDC_JWKS_REFRESH_COOLDOWN = 0
    from tenants.oidc import reset_caches

    reset_caches()
    assert rest(token, "acme").status_code == 200
    assert _code(rest(rotated, "acme")) == (401, "token_invalid")
    assert len(jwks_fetches) == 3  # initial fetch + one refresh for the unknown kid


def test_provider_down_is_503_provider_unreachable(lone_provider):
    token = cli_tokens(lone_provider, login="alice")["access_token"]
    opaque = cli_tokens(
        lone_provider, login="alice", resource=None, scope="openid profile email groups"
    )["access_token"]
    lone_provider.stop()
    assert _code(rest(token, "acme")) == (503, "provider_unreachable")
    assert _code(rest(opaque, "acme")) == (503, "provider_unreachable")


def test_opaque_answers_are_cached_briefly(lone_provider):
    opaque = cli_tokens(
        lone_provider, login="alice", resource=None, scope="openid profile email groups"
    )["access_token"]
    assert rest(opaque, "acme").status_code == 200
    lone_provider.stop()
    assert rest(opaque, "acme").status_code == 200  # within OIDC_USERINFO_CACHE_TTL
