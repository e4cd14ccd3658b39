"""Invitations: a person added by email sets their own password from a mailed link.

The link is allauth's password-reset-from-key link (a signed, single-use token
that expires per PASSWORD_RESET_TIMEOUT), so the invitee lands on the normal
"set a new password" page and signs in with it afterwards.
"""

from __future__ import annotations

from typing import Any

from allauth.account.forms import default_token_generator
from allauth.account.utils import user_pk_to_url_str
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from tenants.models import Tenant


def invitation_link(*, user: Any, site_url: str) -> str:
    path = reverse(
        "account_reset_password_from_key",
        kwargs={
            "uidb36": user_pk_to_url_str(user),
            "key": default_token_generator.make_token(user),
        },
    )
    return site_url.rstrip("/") + path


def invitation_send(*, user: Any, tenant: Tenant, role: str, site_url: str, invited_by: str) -> str:
    """Mail the invitation; returns the link (for the admin's confirmation message)."""
    link = invitation_link(user=user, site_url=site_url)
    send_mail(
        subject=f"You are invited to {tenant.name} on DevBench",
        message=(
            f"{invited_by or 'An administrator'} added you to the DevBench tenant "
            f"'{tenant.name}' as {role}.\n\n"
            f"Choose your password here (the link works once):\n{link}\n\n"
            f"Then sign in at {site_url.rstrip('/')}{settings.LOGIN_URL} "
            f"with the user name '{user.get_username()}' or this email address.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )
    return link
