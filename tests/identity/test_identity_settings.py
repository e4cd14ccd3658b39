"""Identity settings from the environment, providers from the database, session hardening."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from allauth.socialaccount.models import SocialApp
from django.contrib.sites.models import Site
from django.test import Client

from tests.identity.conftest import configure
from tests.identity.oidc import API_AUDIENCE, cli_tokens

ROOT = Path(__file__).resolve().parent.parent.parent
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'apps': s.SOCIALACCOUNT_PROVIDERS['openid_connect']['APPS'], "
    "'session_secure': s.SESSION_COOKIE_SECURE, 'csrf_secure': s.CSRF_COOKIE_SECURE, "
    "'csrf_httponly': s.CSRF_COOKIE_HTTPONLY, 'samesite': s.SESSION_COOKIE_SAMESITE, "
    "'retention': s.AUDIT_RETENTION_DAYS, 'cache': s.CACHES['default']['BACKEND']}))"
)


def _settings_in(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "DEBUG"}
    }
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "devbench_site.settings",
            "DATABASE_URL": "postgres://devbench:devbench@127.0.0.1:5432/devbench",
            "REDIS_URL": "redis://127.0.0.1:6379/9",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "devbench.example.com",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=base, capture_output=True, text=True
    )


def test_production_defaults_and_provider_list_from_env():
    apps = [{"provider_id": "corp", "client_id": "c", "settings": {"server_url": "https://x"}}]
    result = _settings_in(
        {"DEVBENCH_OIDC_PROVIDERS": json.dumps(apps), "AUDIT_RETENTION_DAYS": "90"}
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["apps"][0]["provider_id"] == "corp"
    assert probe["apps"][0]["settings"]["oauth_pkce_enabled"] is True
    assert probe["session_secure"] and probe["csrf_secure"] and probe["csrf_httponly"]
    assert probe["samesite"] == "Lax"
    assert probe["retention"] == 90
    assert probe["cache"].endswith("RedisCache")


def test_malformed_provider_list_refuses_to_start():
    result = _settings_in({"DEVBENCH_OIDC_PROVIDERS": "{not json"})
    assert result.returncode != 0
    assert "DEVBENCH_OIDC_PROVIDERS must be a JSON list" in result.stderr


@pytest.mark.django_db
def test_provider_configured_in_the_database(settings, oidc_provider, acme_beta):
    configure(settings)  # nothing in settings
    app = SocialApp.objects.create(
        provider="openid_connect",
        provider_id="devbench-test",
        name="Test SSO (db)",
        client_id="devbench-web",
        secret="unused",
        settings={"server_url": oidc_provider.issuer, "api_audience": API_AUDIENCE},
    )
    app.sites.add(Site.objects.get_current())
    token = cli_tokens(oidc_provider, login="alice")["access_token"]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_DEVBENCH_TENANT="acme")
    response = client.get("/api/v1/me")
    assert response.status_code == 200, response.content
    assert "Test SSO (db)" in Client().get("/accounts/login/").content.decode()


@pytest.mark.django_db
def test_not_yet_valid_token_is_refused(oidc, acme_beta):
    future = oidc.mint({"sub": "alice", "nbf": int(time.time()) + 3600})
    client = Client(HTTP_AUTHORIZATION=f"Bearer {future}", HTTP_X_DEVBENCH_TENANT="acme")
    response = client.get("/api/v1/me")
    assert (response.status_code, response.json()["code"]) == (401, "token_invalid")


@pytest.mark.django_db
def test_without_providers_a_foreign_token_is_malformed(settings):
    configure(settings)
    response = Client(HTTP_AUTHORIZATION="Bearer eyJ.e30.sig").get("/api/v1/me")
    assert (response.status_code, response.json()["code"]) == (401, "token_malformed")
