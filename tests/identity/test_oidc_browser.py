"""Browser sign-in through allauth against the real OpenID provider (authorization code + PKCE).

The Django side runs in the test client; the provider side is plain HTTP with a
requests session that fills the provider's sign-in and consent forms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.test import Client

from tenants.models import AuditEvent, Membership, MembershipRule
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.identity.oidc import CALLBACK, PROVIDER_ID, Provider, cli_tokens, follow_provider

pytestmark = pytest.mark.django_db


def browser_sign_in(provider: Provider, *, login: str, client: Client | None = None) -> Client:
    client = client or Client()
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/")
    assert start.status_code == 302, start.content[:500]
    authorize = start["Location"]
    query = parse_qs(urlparse(authorize).query)
    assert authorize.startswith(provider.issuer)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    back = follow_provider(requests.Session(), authorize, login=login, stop_prefix=CALLBACK)
    callback = client.get(back.removeprefix("http://testserver"))
    assert callback.status_code == 302, callback.content[:1000]
    assert callback["Location"] == "/", callback["Location"]
    return client


def signed_in_user(client: Client) -> Any:
    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def roles(user: Any) -> dict[str, tuple[str, str]]:
    return {
        m.tenant.slug: (m.role, m.granted_by)
        for m in Membership.objects.filter(user=user).select_related("tenant")
    }


def test_sign_in_creates_user_linked_by_subject_with_rule_memberships(oidc, acme_beta):
    client = browser_sign_in(oidc, login="alice")
    user = signed_in_user(client)
    account = SocialAccount.objects.get(user=user)
    assert (account.provider, account.uid) == (PROVIDER_ID, "alice")
    assert roles(user) == {"acme": ("admin", PROVIDER_ID), "beta": ("member", PROVIDER_ID)}
    assert user.is_staff  # tenant admins manage their tenant in the admin
    assert not user.has_usable_password()
    grants = AuditEvent.objects.filter(action="membership.grant", target_id=str(user.pk))
    assert {e.tenant.slug for e in grants if e.tenant} == {"acme", "beta"}
    # The session works on a page that needs it.
    assert client.get("/accounts/email/").status_code == 200


def test_second_sign_in_links_same_user_and_resyncs_rule_memberships(oidc, acme_beta):
    first = signed_in_user(browser_sign_in(oidc, login="alice"))
    # An admin drops the beta rule and adds alice by hand elsewhere.
    MembershipRule.objects.filter(value="beta-users").update(active=False)
    gamma = TenantFactory(slug="gamma")
    MembershipFactory(user=first, tenant=gamma, role="viewer")
    second = signed_in_user(browser_sign_in(oidc, login="alice"))
    assert second.pk == first.pk
    assert SocialAccount.objects.filter(provider=PROVIDER_ID, uid="alice").count() == 1
    assert get_user_model().objects.filter(socialaccount__uid="alice").count() == 1
    # The rule-granted beta membership went; the hand-made gamma one stays untouched.
    assert roles(second) == {"acme": ("admin", PROVIDER_ID), "gamma": ("viewer", "")}
    assert AuditEvent.objects.filter(
        action="membership.revoke", tenant=acme_beta["beta"], target_id=str(first.pk)
    ).exists()


def test_rules_never_change_a_hand_made_membership(oidc, acme_beta):
    # carol has no groups; an admin made her owner of acme by hand before her first sign-in.
    user = signed_in_user(browser_sign_in(oidc, login="carol"))
    Membership.objects.create(user=user, tenant=acme_beta["acme"], role="owner")
    browser_sign_in(oidc, login="carol")
    assert roles(user) == {"acme": ("owner", "")}


def test_email_never_links_to_an_existing_account(oidc, acme_beta):
    local = UserFactory(username="alice-local", email="alice@example.test")
    user = signed_in_user(browser_sign_in(oidc, login="alice"))
    assert user.pk != local.pk
    assert not SocialAccount.objects.filter(user=local).exists()
    assert user.email == ""  # the address stays with the account that had it


def test_bearer_first_then_browser_is_one_user(oidc, acme_beta):
    from tenants.auth import authenticate_bearer

    token = cli_tokens(oidc, login="bob")["access_token"]
    principal = authenticate_bearer(f"Bearer {token}")
    assert principal.tenant.slug == "acme"  # bob's only tenant (viewer, from his group)
    browser_user = signed_in_user(browser_sign_in(oidc, login="bob"))
    assert browser_user.pk == principal.user_id


def test_sign_in_page_lists_the_provider_and_needs_csrf(oidc):
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Test SSO" in body and f"/accounts/oidc/{PROVIDER_ID}/login/" in body
    assert "csrfmiddlewaretoken" in body
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(f"/accounts/oidc/{PROVIDER_ID}/login/").status_code == 403
    assert strict.post("/accounts/login/", {"login": "x", "password": "y"}).status_code == 403


def test_provider_start_by_get_does_not_redirect(oidc):
    # SOCIALACCOUNT_LOGIN_ON_GET is off: a link cannot start a sign-in behind the user's back.
    response = Client().get(f"/accounts/oidc/{PROVIDER_ID}/login/")
    assert response.status_code == 200
    assert "Location" not in response


def test_local_sign_in_still_works(db):
    UserFactory(username="dana")
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": "dana", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")
