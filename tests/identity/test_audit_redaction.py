"""Secrets and personal data never reach stored or logged audit details."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants.redaction import REDACTED, mask_email, redact, redact_text


def test_secret_named_keys_are_redacted_at_any_depth():
    details = {
        "password": "hunter2",
        "api_token": "abc",
        "client_secret": "s3",
        "nested": {"AWS_SECRET_ACCESS_KEY": "AKIA...", "Authorization": "Bearer xyz"},
        "env": {"GITHUB_TOKEN": "ghp_x", "DB_PASSWORD": "pw", "HOME": "/home/dev", "PATH": "/bin"},
        "idempotency_key": "retry-1",
        "image": "devbench/busybox:latest",
    }
    out = redact(details)
    assert out["password"] == out["api_token"] == out["client_secret"] == REDACTED
    assert out["nested"] == {"AWS_SECRET_ACCESS_KEY": REDACTED, "Authorization": REDACTED}
    assert out["env"] == {
        "GITHUB_TOKEN": REDACTED,
        "DB_PASSWORD": REDACTED,
        "HOME": "/home/dev",
        "PATH": "/bin",
    }
    assert out["idempotency_key"] == "retry-1"  # names a key, is not one
    assert out["image"] == "devbench/busybox:latest"
    assert details["password"] == "hunter2"  # the input is not modified


def test_secrets_inside_strings_and_lists():
    cmd = [
        "env",
        "API_KEY=sk-live-123",
        "MODE=fast",
        "curl",
        "-H",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
        "--password=pw1",
        "dbt_abcdefgh_SECRETSECRETSECRETSECRET",
    ]
    out = redact({"cmd": cmd})["cmd"]
    text = json.dumps(out)
    for secret in ("sk-live-123", "eyJhbGciOiJSUzI1NiJ9", "pw1", "SECRETSECRET"):
        assert secret not in text
    assert "MODE=fast" in out and "API_KEY=[redacted]" in out
    assert redact_text("sh -c 'export GH_TOKEN=abc; make'") == (
        "sh -c 'export GH_TOKEN=[redacted]; make'"
    )


def test_emails_are_masked():
    assert mask_email("mail alice.smith@example.com now") == "mail a***@example.com now"
    assert redact({"email": "bob@corp.test", "who": ["x@y.io"]}) == {
        "email": "b***@corp.test",
        "who": ["x***@y.io"],
    }


def test_non_json_values_become_strings():
    assert redact({"n": 1, "ok": True, "none": None, "f": 1.5, "o": object}) == {
        "n": 1,
        "ok": True,
        "none": None,
        "f": 1.5,
        "o": "<class 'object'>",
    }


_name = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}_(TOKEN|SECRET|PASSWORD|KEY)", fullmatch=True)
_secret = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=30)


@given(name=_name, secret=_secret)
def test_env_style_secrets_never_survive(name, secret):
    assert secret not in json.dumps(redact({"env": {name: secret}}))
    assert secret not in json.dumps(redact({"env": [f"{name}={secret}"]}))
    assert secret not in redact_text(f"run {name}={secret} now")


@pytest.mark.parametrize("value", ["", None])
def test_empty_secret_values_stay_visible(value):
    # An empty or missing secret is worth seeing (a misconfiguration), and leaks nothing.
    assert redact({"token": value}) == {"token": value}
