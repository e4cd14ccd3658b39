"""Team admins manage only their own tenants in the Django admin (real HTTP requests)."""

import re

import pytest
from django.test import Client

from tenants.auth import authenticate_bearer
from tenants.models import ApiToken, AuditEvent, Membership, TenantPolicy
from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants():
    a, b = TenantFactory(slug="alpha"), TenantFactory(slug="bravo")
    admin_a = UserFactory(username="admin-a", is_staff=True)
    MembershipFactory(user=admin_a, tenant=a, role="admin")
    member_a = MembershipFactory(tenant=a, role="member", user=UserFactory(username="member-a"))
    member_b = MembershipFactory(tenant=b, role="member", user=UserFactory(username="member-b"))
    token_a = ApiTokenFactory(tenant=a, user=member_a.user, name="token-of-alpha")
    token_b = ApiTokenFactory(tenant=b, user=member_b.user, name="token-of-bravo")
    client = Client()
    client.force_login(admin_a)
    return {
        "a": a,
        "b": b,
        "client": client,
        "member_b": member_b,
        "token_a": token_a,
        "token_b": token_b,
        "admin_a": admin_a,
    }


def test_lists_show_only_own_tenant(two_tenants):
    c = two_tenants["client"]
    members = c.get("/admin/tenants/membership/").content.decode()
    assert "member-a" in members and "member-b" not in members
    tokens = c.get("/admin/tenants/apitoken/").content.decode()
    assert "token-of-alpha" in tokens and "token-of-bravo" not in tokens
    tenants = c.get("/admin/tenants/tenant/").content.decode()
    assert "alpha" in tenants and "bravo" not in tenants
    policies = c.get("/admin/tenants/tenantpolicy/").content.decode()
    assert ">alpha<" in policies and "bravo" not in policies


def test_cannot_open_or_change_other_tenants_objects(two_tenants):
    c, b = two_tenants["client"], two_tenants["b"]
    policy_b = TenantPolicy.objects.get(tenant=b)
    for url in (
        f"/admin/tenants/membership/{two_tenants['member_b'].pk}/change/",
        f"/admin/tenants/apitoken/{two_tenants['token_b'].pk}/change/",
        f"/admin/tenants/tenantpolicy/{policy_b.pk}/change/",
        f"/admin/tenants/tenant/{b.pk}/change/",
    ):
        response = c.get(url)
        # Django's admin redirects a missing object to the index with a message.
        assert response.status_code == 302, url
        assert c.get(response["Location"]).status_code == 200
    response = c.post(
        f"/admin/tenants/tenantpolicy/{policy_b.pk}/change/", {"memory_limit_mb": 99999}
    )
    assert response.status_code == 302
    policy_b.refresh_from_db()
    assert policy_b.memory_limit_mb == 512


def test_add_forms_offer_only_own_tenant(two_tenants):
    c = two_tenants["client"]
    page = c.get("/admin/tenants/apitoken/add/").content.decode()
    assert "alpha" in page and "bravo" not in page
    assert "member-b" not in page
    response = c.post(
        "/admin/tenants/membership/add/",
        {"tenant": two_tenants["b"].pk, "email": "intruder@example.test", "role": "owner"},
    )
    assert response.status_code == 200  # form error: not a valid choice
    assert not Membership.objects.filter(
        tenant=two_tenants["b"], user__email="intruder@example.test"
    ).exists()


def test_admin_can_edit_own_policy(two_tenants):
    c, a = two_tenants["client"], two_tenants["a"]
    policy = TenantPolicy.objects.get(tenant=a)
    page = c.get(f"/admin/tenants/tenantpolicy/{policy.pk}/change/")
    assert page.status_code == 200
    assert b"Warm pool now" in page.content and b"Warm pool size" in page.content
    data = {
        f: getattr(policy, f)
        for f in (
            "default_image",
            "memory_limit_mb",
            "cpu_limit",
            "pids_limit",
            "network_mode",
            "max_workspaces",
            "max_concurrent_execs",
            "default_ttl_s",
            "max_ttl_s",
            "max_file_size_bytes",
            "exec_output_cap_bytes",
            "max_snapshots",
            "max_snapshot_bytes",
            "warm_pool_size",
            "warm_pool_max_age_s",
            "idle_timeout_s",
            "exec_retention_days",
            "image_scan_block_severity",
        )
    }
    data["allowed_images"] = '["devbench/*"]'
    data["memory_limit_mb"] = 1024
    data["idle_timeout_s"] = 900
    response = c.post(f"/admin/tenants/tenantpolicy/{policy.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy.refresh_from_db()
    assert policy.memory_limit_mb == 1024
    assert policy.allowed_images == ["devbench/*"]
    assert policy.idle_timeout_s == 900
    # The admin edit went through the audited service, with the admin as actor.
    event = AuditEvent.objects.get(action="tenant_policy.update")
    assert event.actor_kind == "session"
    assert event.actor_id == f"user:{two_tenants['admin_a'].pk}"
    assert event.details["changes"]["memory_limit_mb"] == {"old": 512, "new": 1024}


def test_creating_a_token_shows_the_secret_once(two_tenants):
    c, a = two_tenants["client"], two_tenants["a"]
    member = Membership.objects.get(tenant=a, role="member").user
    response = c.post(
        "/admin/tenants/apitoken/add/",
        {
            "tenant": a.pk,
            "user": member.pk,
            "name": "from-admin",
            "scope_choices": ["read"],
            "expires_at": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    match = re.search(r"(dbt_[a-z0-9]{8}_[A-Za-z0-9_-]{43})", page)
    assert match, page[:3000]
    principal = authenticate_bearer(f"Bearer {match.group(1)}")
    assert principal.tenant == a and principal.scopes == frozenset({"read"})
    token = ApiToken.objects.get(name="from-admin")
    detail = c.get(f"/admin/tenants/apitoken/{token.pk}/change/").content.decode()
    assert match.group(1) not in detail
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.actor_id == f"user:{two_tenants['admin_a'].pk}" and event.tenant == a
    assert event.target_id == token.prefix


def test_revoking_and_removing_in_the_admin_are_audited(two_tenants):
    c, a = two_tenants["client"], two_tenants["a"]
    token = two_tenants["token_a"]
    response = c.post(
        "/admin/tenants/apitoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    revoke = AuditEvent.objects.get(action="api_token.revoke")
    assert revoke.actor_id == f"user:{two_tenants['admin_a'].pk}"
    member = Membership.objects.get(tenant=a, role="member")
    response = c.post(f"/admin/tenants/membership/{member.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=member.pk).exists()
    removed = AuditEvent.objects.get(action="membership.remove")
    assert removed.actor_id == f"user:{two_tenants['admin_a'].pk}"
    assert removed.target_id == str(member.user_id)


def test_add_member_by_email(two_tenants):
    c, a = two_tenants["client"], two_tenants["a"]
    response = c.post(
        "/admin/tenants/membership/add/",
        {"tenant": a.pk, "email": "new@example.test", "role": "viewer"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    added = Membership.objects.get(tenant=a, user__email="new@example.test")
    assert added.role == "viewer"
    event = AuditEvent.objects.get(action="membership.set")
    assert event.actor_id == f"user:{two_tenants['admin_a'].pk}"
    assert event.target_id == str(added.user_id)


def test_plain_member_has_no_admin_access(two_tenants):
    member = Membership.objects.get(tenant=two_tenants["a"], role="member").user
    member.is_staff = True
    member.save()
    client = Client()
    client.force_login(member)
    assert client.get("/admin/tenants/apitoken/").status_code == 403


def test_superuser_sees_everything(two_tenants):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    tokens = client.get("/admin/tenants/apitoken/").content.decode()
    assert "token-of-alpha" in tokens and "token-of-bravo" in tokens


def test_member_added_by_email_is_invited_and_sets_a_password(two_tenants, mailoutbox):
    c, a = two_tenants["client"], two_tenants["a"]
    response = c.post(
        "/admin/tenants/membership/add/",
        {"tenant": a.pk, "email": "newcomer@example.test", "role": "member"},
        follow=True,
    )
    assert response.status_code == 200
    assert "invitation was mailed" in response.content.decode()
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["newcomer@example.test"] and a.name in mail.subject
    found = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.body)
    assert found is not None
    link = found.group(1)

    invitee = Client()
    form_page = invitee.get(link, follow=True)
    assert form_page.status_code == 200
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    done = invitee.post(
        set_url, {"password1": "a-Long-pass-4-dev", "password2": "a-Long-pass-4-dev"}
    )
    assert done.status_code == 302, done.content.decode()[:2000]

    signed_in = Client()
    login = signed_in.post(
        "/accounts/login/", {"login": "newcomer@example.test", "password": "a-Long-pass-4-dev"}
    )
    assert login.status_code == 302
    assert signed_in.get(f"/t/{a.slug}/workspaces/").status_code == 200
    assert signed_in.get(f"/t/{two_tenants['b'].slug}/workspaces/").status_code == 404
    # The link works once.
    assert Client().get(link, follow=True).content.decode().count("password1") == 0


def test_existing_user_added_by_email_gets_no_invitation(two_tenants, mailoutbox):
    c, a = two_tenants["client"], two_tenants["a"]
    UserFactory(username="known", email="known@example.test")  # has a password
    response = c.post(
        "/admin/tenants/membership/add/",
        {"tenant": a.pk, "email": "known@example.test", "role": "viewer"},
    )
    assert response.status_code == 302
    assert mailoutbox == []
    assert Membership.objects.get(tenant=a, user__username="known").role == "viewer"
