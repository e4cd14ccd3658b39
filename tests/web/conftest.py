"""Signed-in browser sessions (Django test client) for the web pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import MembershipFactory, UserFactory


def signed_in(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def member(tenant: Any) -> Any:
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="member")
    return user


@pytest.fixture
def viewer(tenant: Any) -> Any:
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="viewer")
    return user


@pytest.fixture
def web(member: Any) -> Client:
    """A member of ``tenant`` signed in with a session."""
    return signed_in(member)


@pytest.fixture
def viewer_web(viewer: Any) -> Client:
    return signed_in(viewer)


def messages_of(response: Any) -> list[tuple[str, str]]:
    """(code, text) of each message a followed redirect shows."""
    return [(m.extra_tags, m.message) for m in response.context["messages"]]
