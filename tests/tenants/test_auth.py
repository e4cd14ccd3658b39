from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.errors import AuthenticationFailed, NotFound, PermissionDenied
from tenants.auth import authenticate_bearer
from tenants.models import ApiToken
from tests.bodies import error_body
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_me_returns_the_principal(api, token, tenant):
    response = api.get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == {"slug": tenant.slug, "name": tenant.name}
    assert body["user"]["username"] == token.user.username
    assert body["scopes"] == ["read", "write"]
    assert body["kind"] == "token"


def test_token_use_records_last_used(api, token):
    assert token.last_used_at is None
    api.get("/api/v1/me")
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "token_missing"),
        ("Basic dXNlcjpwYXNz", "token_malformed"),
        ("Bearer", "token_malformed"),
        ("Bearer a b", "token_malformed"),
        ("Bearer dbt_short_x", "token_malformed"),
        ("Bearer not-a-devbench-token", "token_malformed"),
    ],
)
def test_malformed_or_missing_header_is_401_with_code(header, code):
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_and_wrong_secret_are_token_invalid(token):
    unknown = "dbt_zzzzzzzz_" + "A" * 43
    assert Client(HTTP_AUTHORIZATION=f"Bearer {unknown}").get("/api/v1/me").json()["code"] == (
        "token_invalid"
    )
    forged = token.raw[:-1] + ("B" if token.raw[-1] != "B" else "C")
    response = Client(HTTP_AUTHORIZATION=f"Bearer {forged}").get("/api/v1/me")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "token_invalid"
    assert token.prefix not in body["message"]


def test_expired_token_is_rejected(make_token):
    expired = make_token(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(expired).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


def test_future_expiry_is_accepted(make_token):
    token = make_token(expires_at=timezone.now() + timedelta(hours=1))
    assert client_for(token).get("/api/v1/me").status_code == 200


def test_revoked_token_is_rejected(api, token, actor):
    from tenants.services import api_token_revoke

    api_token_revoke(actor=actor, token=token)
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


def test_deactivated_tenant_is_refused(api, tenant):
    tenant.active = False
    tenant.save()
    response = api.get("/api/v1/me")
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_inactive"


def test_foreign_tenant_url_is_indistinguishable_from_missing(api, tenant, other_tenant):
    own = api.get(f"/api/v1/tenants/{tenant.slug}")
    assert own.status_code == 200
    assert own.json()["policy"]["memory_limit_mb"] == 512
    foreign = api.get(f"/api/v1/tenants/{other_tenant.slug}")
    missing = api.get("/api/v1/tenants/does-not-exist")
    assert foreign.status_code == missing.status_code == 404
    assert error_body(foreign) == error_body(missing)
    assert foreign.json()["code"] == "tenant_not_found"


def test_authenticate_bearer_checks_tenant_slug(token, tenant, other_tenant):
    principal = authenticate_bearer(f"Bearer {token.raw}", tenant_slug=tenant.slug)
    assert principal.tenant == tenant
    with pytest.raises(NotFound) as excinfo:
        authenticate_bearer(f"Bearer {token.raw}", tenant_slug=other_tenant.slug)
    assert excinfo.value.code == "tenant_not_found"


def test_scopes_are_hierarchical_and_enforced(make_token):
    read_only = authenticate_bearer(f"Bearer {make_token(scopes=('read',)).raw}")
    assert read_only.has_scope("read")
    assert not read_only.has_scope("write")
    with pytest.raises(PermissionDenied) as excinfo:
        read_only.require_scope("write")
    assert excinfo.value.code == "scope_required"
    assert excinfo.value.extra["required_scope"] == "write"
    admin = authenticate_bearer(f"Bearer {make_token(scopes=('admin',)).raw}")
    assert admin.has_scope("read") and admin.has_scope("write") and admin.has_scope("admin")


def test_only_a_salted_hash_is_stored(token):
    row = ApiToken.objects.get(pk=token.pk)
    secret = token.raw.split("_", 2)[2]
    assert secret not in {row.secret_hash, row.salt, row.prefix, row.name}
    assert len(row.secret_hash) == 64


def test_inactive_user_token_is_invalid(token):
    token.user.is_active = False
    token.user.save()
    with pytest.raises(AuthenticationFailed) as excinfo:
        authenticate_bearer(f"Bearer {token.raw}")
    assert excinfo.value.code == "token_invalid"


def test_system_status_over_rest(api, tenant, make_token):
    from tests.factories import WorkspaceFactory

    WorkspaceFactory(tenant=tenant, status="running")
    WorkspaceFactory(status="running")  # another tenant's: not counted
    response = api.get("/api/v1/system/status")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["tenant"]["slug"] == tenant.slug
    assert body["scopes"] == ["read", "write"]
    assert body["engine"]["reachable"] is True
    assert body["workspaces"] == {"running": 1, "total": 1}
    assert body["policy"]["max_workspaces"] == 10
    assert body["mode"] == "production"
