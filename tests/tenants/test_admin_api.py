"""Tenant administration over REST: members, tokens, policy; scopes, isolation, audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.models import ApiToken, AuditEvent, Membership, TenantPolicy
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def _client(token: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")


@pytest.fixture
def two() -> dict[str, Any]:
    a, b = TenantFactory(slug="alpha"), TenantFactory(slug="bravo")
    owner_a = MembershipFactory(tenant=a, role="owner", user=UserFactory(username="owner-a"))
    member_a = MembershipFactory(tenant=a, role="member", user=UserFactory(username="member-a"))
    owner_b = MembershipFactory(tenant=b, role="owner", user=UserFactory(username="owner-b"))
    admin_a = ApiTokenFactory(tenant=a, user=owner_a.user, scopes=["read", "write", "admin"])
    writer_a = ApiTokenFactory(tenant=a, user=member_a.user, scopes=["read", "write"])
    token_b = ApiTokenFactory(tenant=b, user=owner_b.user, scopes=["read"])
    return {
        "a": a,
        "b": b,
        "owner_a": owner_a,
        "member_a": member_a,
        "owner_b": owner_b,
        "admin": _client(admin_a),
        "admin_token": admin_a,
        "writer": _client(writer_a),
        "token_b": token_b,
    }


def _last_event(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-pk").first()
    assert event is not None, action
    return event


def test_members_list_invite_role_change_remove(two: dict[str, Any]) -> None:
    c = two["admin"]
    listed = c.get("/api/v1/tenants/alpha/members").json()
    assert listed["count"] == 2
    assert {m["username"] for m in listed["items"]} == {"owner-a", "member-a"}

    r = c.post(
        "/api/v1/tenants/alpha/members",
        {"email": "new@example.test", "role": "viewer"},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    new_id = r.json()["user_id"]
    assert Membership.objects.get(tenant=two["a"], user_id=new_id).role == "viewer"
    invite = _last_event("membership.set")
    assert invite.actor_id == f"token:{two['admin_token'].prefix}"
    assert invite.details["role"] == "viewer" and invite.outcome == "success"

    r = c.patch(
        f"/api/v1/tenants/alpha/members/{new_id}",
        {"role": "admin"},
        content_type="application/json",
    )
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert _last_event("membership.set").details["previous_role"] == "viewer"

    r = c.delete(f"/api/v1/tenants/alpha/members/{new_id}")
    assert r.status_code == 204
    assert not Membership.objects.filter(tenant=two["a"], user_id=new_id).exists()
    removed = _last_event("membership.remove")
    assert removed.target_id == str(new_id) and removed.tenant == two["a"]


def test_removing_a_member_revokes_their_tokens(two: dict[str, Any]) -> None:
    member = two["member_a"]
    assert two["writer"].get("/api/v1/me").status_code == 200  # verified, so remembered
    r = two["admin"].delete(f"/api/v1/tenants/alpha/members/{member.user_id}")
    assert r.status_code == 204
    assert two["writer"].get("/api/v1/me").json()["code"] == "token_revoked"
    assert _last_event("membership.remove").details["revoked_count"] == 1


def test_last_owner_cannot_be_demoted_or_removed(two: dict[str, Any]) -> None:
    owner_id = two["owner_a"].user_id
    r = two["admin"].patch(
        f"/api/v1/tenants/alpha/members/{owner_id}",
        {"role": "member"},
        content_type="application/json",
    )
    assert r.status_code == 409 and r.json()["code"] == "last_owner"
    assert Membership.objects.get(user_id=owner_id, tenant=two["a"]).role == "owner"
    refused = _last_event("membership.set")
    assert refused.outcome == "error" and refused.error_code == "last_owner"
    r = two["admin"].delete(f"/api/v1/tenants/alpha/members/{owner_id}")
    assert r.status_code == 409 and r.json()["code"] == "last_owner"


def test_tokens_create_shows_secret_once_list_by_prefix_revoke(two: dict[str, Any]) -> None:
    c = two["admin"]
    r = c.post(
        "/api/v1/tenants/alpha/tokens",
        {"name": "ci", "scopes": ["read"], "user_id": two["member_a"].user_id},
        content_type="application/json",
    )
    assert r.status_code == 201, r.content
    created = r.json()
    secret, prefix = created["token"], created["prefix"]
    assert secret.startswith("dbt_") and prefix in secret
    assert ApiToken.objects.get(prefix=prefix).user_id == two["member_a"].user_id
    event = _last_event("api_token.create")
    assert event.target_id == prefix and secret not in str(event.details)
    # The new token works, with exactly its scopes.
    me = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/v1/me").json()
    assert me["scopes"] == ["read"]

    listed = c.get(f"/api/v1/tenants/alpha/tokens?prefix={prefix}").json()
    assert [t["prefix"] for t in listed["items"]] == [prefix]
    assert "token" not in listed["items"][0] and "secret_hash" not in listed["items"][0]

    r = c.delete(f"/api/v1/tenants/alpha/tokens/{prefix}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert _last_event("api_token.revoke").target_id == prefix
    assert Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/v1/me").status_code == 401
    assert c.get(f"/api/v1/tenants/alpha/tokens?prefix={prefix}").json()["count"] == 0
    revoked = c.get(f"/api/v1/tenants/alpha/tokens?prefix={prefix}&include_revoked=true")
    assert revoked.json()["count"] == 1


def test_token_for_a_non_member_is_404(two: dict[str, Any]) -> None:
    r = two["admin"].post(
        "/api/v1/tenants/alpha/tokens",
        {"name": "x", "user_id": two["owner_b"].user_id},
        content_type="application/json",
    )
    assert r.status_code == 404 and r.json()["code"] == "member_not_found"


def test_policy_read_and_update_with_field_errors(two: dict[str, Any]) -> None:
    c = two["admin"]
    policy = c.get("/api/v1/tenants/alpha/policy").json()
    assert policy["memory_limit_mb"] == 512 and policy["exec_retention_days"] == 30

    r = c.patch(
        "/api/v1/tenants/alpha/policy",
        {"memory_limit_mb": 1024, "network_mode": "bridge"},
        content_type="application/json",
    )
    assert r.status_code == 200 and r.json()["memory_limit_mb"] == 1024
    event = _last_event("tenant_policy.update")
    assert event.details["changes"]["memory_limit_mb"] == {"old": 512, "new": 1024}

    r = c.patch(
        "/api/v1/tenants/alpha/policy",
        {"memory_limit_mb": 4, "pids_limit": 1, "max_workspaces": 3},
        content_type="application/json",
    )
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_failed"
    assert set(body["extra"]["fields"]) == {"memory_limit_mb", "pids_limit"}
    # Nothing changed, not even the valid field.
    assert TenantPolicy.objects.get(tenant=two["a"]).max_workspaces != 3
    assert _last_event("tenant_policy.update").outcome == "error"

    r = c.patch(
        "/api/v1/tenants/alpha/policy", {"network_mode": "host"}, content_type="application/json"
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    r = c.patch("/api/v1/tenants/alpha/policy", {"nope": 1}, content_type="application/json")
    assert r.status_code == 422


def test_admin_scope_is_required(two: dict[str, Any]) -> None:
    w = two["writer"]
    for method, url, body in (
        ("get", "/api/v1/tenants/alpha/members", None),
        ("get", "/api/v1/tenants/alpha/tokens", None),
        ("get", "/api/v1/tenants/alpha/policy", None),
        ("patch", "/api/v1/tenants/alpha/policy", {"max_workspaces": 99}),
        ("post", "/api/v1/tenants/alpha/tokens", {"name": "x", "scopes": ["admin"]}),
    ):
        r = getattr(w, method)(url, body, content_type="application/json")
        assert r.status_code == 403, url
        assert r.json()["code"] == "scope_required"
    assert TenantPolicy.objects.get(tenant=two["a"]).max_workspaces != 99


def test_another_tenants_admin_token_gets_404_like_missing(two: dict[str, Any]) -> None:
    """A's admin token cannot see or touch B's members, tokens or policy."""
    c, b = two["admin"], two["b"]
    owner_b, token_b = two["owner_b"], two["token_b"]
    for slug in ("bravo", "no-such-tenant"):
        for method, url, body in (
            ("get", f"/api/v1/tenants/{slug}/members", None),
            ("post", f"/api/v1/tenants/{slug}/members", {"email": "x@example.test"}),
            ("patch", f"/api/v1/tenants/{slug}/members/{owner_b.user_id}", {"role": "viewer"}),
            ("delete", f"/api/v1/tenants/{slug}/members/{owner_b.user_id}", None),
            ("get", f"/api/v1/tenants/{slug}/tokens", None),
            ("post", f"/api/v1/tenants/{slug}/tokens", {"name": "x"}),
            ("delete", f"/api/v1/tenants/{slug}/tokens/{token_b.prefix}", None),
            ("get", f"/api/v1/tenants/{slug}/policy", None),
            ("patch", f"/api/v1/tenants/{slug}/policy", {"max_workspaces": 99}),
        ):
            r = getattr(c, method)(url, body, content_type="application/json")
            assert r.status_code == 404, (method, url)
            assert r.json()["code"] == "tenant_not_found"
    # B's objects named under A's own slug are missing too.
    assert c.delete(f"/api/v1/tenants/alpha/members/{owner_b.user_id}").status_code == 404
    assert c.delete(f"/api/v1/tenants/alpha/tokens/{token_b.prefix}").status_code == 404
    assert Membership.objects.get(pk=owner_b.pk).role == "owner"
    assert ApiToken.objects.get(pk=token_b.pk).revoked_at is None
    assert TenantPolicy.objects.get(tenant=b).max_workspaces != 99
    assert not Membership.objects.filter(tenant=b, user__email="x@example.test").exists()


def test_no_scope_escalation_through_tokens(two: dict[str, Any], make_token: Any) -> None:
    from core.errors import PermissionDenied
    from tenants.auth import principal_for_member
    from tenants.services import api_token_create

    # A member acting in the web UI has read+write: no admin scope, so no tokens at all.
    member = principal_for_member(user=two["member_a"].user, tenant=two["a"])
    with pytest.raises(PermissionDenied):
        api_token_create(actor=member, user=member.user, name="x", scopes=["admin"])
