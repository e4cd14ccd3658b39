"""Brute force on sign-in: every login form is rate limited, the admin's included."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    cache.clear()


def test_the_admin_login_form_is_the_rate_limited_sign_in() -> None:
    answer = Client().get("/admin/login/?next=/admin/")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/accounts/login/")
    # Posting passwords to the admin's URL gets no verdict: only the redirect.
    posted = Client().post("/admin/login/", {"username": "x", "password": "y"})
    assert posted.status_code == 302 and posted["Location"].startswith("/accounts/login/")


def test_wrong_passwords_lock_the_sign_in_even_for_the_right_one() -> None:
    user: Any = UserFactory(username="alice", is_staff=True)
    user.set_password("right-password-1")
    user.save()
    client = Client()
    for i in range(12):
        client.post("/accounts/login/", {"login": "alice", "password": f"wrong-{i}"})
    locked = client.post("/accounts/login/", {"login": "alice", "password": "right-password-1"})
    assert b"Too many failed login attempts" in locked.content
    assert "_auth_user_id" not in client.session
    # Without the failed attempts, the right password signs in.
    cache.clear()
    client.post("/accounts/login/", {"login": "alice", "password": "right-password-1"})
    assert client.session["_auth_user_id"] == str(user.pk)
    client.logout()
    for i in range(12):
        client.post("/accounts/login/", {"login": "alice", "password": f"wrong-{i}"})
    # The admin is out of reach as well: it sends to the same locked form.
    assert client.get("/admin/").status_code == 302
