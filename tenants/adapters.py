"""allauth glue: browser sign-in with OpenID providers.

* Membership rules run at every sign-in with a provider (``user_logged_in``),
  from the ID token and userinfo claims allauth received.
* Accounts are matched by (provider, ``sub``) only: an email address never
  links a provider's user to an existing account, and an address already used
  by another account is left off the new one instead of blocking sign-up.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from tenants.identity import membership_rules_apply


def sociallogin_claims(sociallogin: Any) -> dict[str, Any]:
    """ID token claims overlaid with userinfo (the fresher, fuller source)."""
    data = sociallogin.account.extra_data or {}
    claims: dict[str, Any] = {}
    for part in ("id_token", "userinfo"):
        if isinstance(data.get(part), dict):
            claims.update(data[part])
    return claims or dict(data)


def on_user_logged_in(
    sender: Any, request: HttpRequest, user: Any, sociallogin: Any = None, **kwargs: Any
) -> None:
    if sociallogin is None or sociallogin.account.provider is None:
        return  # a local (username/password) sign-in: memberships are managed by hand
    membership_rules_apply(
        user=user, provider_id=sociallogin.account.provider, claims=sociallogin_claims(sociallogin)
    )


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def populate_user(self, request: HttpRequest, sociallogin: Any, data: dict[str, Any]) -> Any:
        user = super().populate_user(request, sociallogin, data)
        email = getattr(user, "email", "")
        if email and get_user_model().objects.filter(email__iexact=email).exists():
            user.email = ""
            sociallogin.email_addresses = []
        return user

    def is_auto_signup_allowed(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        # Users of a trusted provider get an account at first sign-in (SOCIALACCOUNT_ALLOW_SIGNUP).
        return bool(settings.SOCIALACCOUNT_ALLOW_SIGNUP)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Local sign-up is off unless ACCOUNT_ALLOW_SIGNUP: people come from a provider
        # or an admin adds them.
        return bool(settings.ACCOUNT_ALLOW_SIGNUP)
