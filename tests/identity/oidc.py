"""Drive the real test OpenID provider (tests/oidc_provider/server.mjs) over HTTP.

The provider runs as a node process on 127.0.0.1 on a free port. Its signing key
is made here, so tests can also mint tokens that differ from the provider's in
exactly one respect (expired, wrong audience, wrong issuer) or are forged with
another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.node import ensure_node_modules, node_argv, node_env

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
API_AUDIENCE = "https://devbench.test/api"
OTHER_AUDIENCE = "https://other.test/api"
WEB_CLIENT_ID = "devbench-web"
WEB_CLIENT_SECRET = "devbench-web-test-secret-0123456789"
CLI_CLIENT_ID = "devbench-cli"
CLI_REDIRECT = "http://127.0.0.1/cli-callback"
PROVIDER_ID = "devbench-test"
CALLBACK = f"http://testserver/accounts/oidc/{PROVIDER_ID}/login/callback/"

ACCOUNTS = {
    "alice": {
        "email": "alice@example.test",
        "email_verified": True,
        "name": "Alice Admin",
        "groups": ["acme-admins", "beta-users"],
    },
    "bob": {"email": "bob@example.test", "email_verified": True, "groups": ["acme-viewers"]},
    "carol": {"email": "carol@example.test", "email_verified": True, "groups": []},
}


def new_signing_key(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return key, jwk


@dataclass
class Provider:
    issuer: str
    key: Any
    kid: str
    process: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def app_config(self, **settings: Any) -> dict[str, Any]:
        """An allauth openid_connect app (DEVBENCH_OIDC_PROVIDERS entry) for this provider."""
        return {
            "provider_id": PROVIDER_ID,
            "name": "Test SSO",
            "client_id": WEB_CLIENT_ID,
            "secret": WEB_CLIENT_SECRET,
            "settings": {
                "server_url": self.issuer,
                "oauth_pkce_enabled": True,
                "scope": ["openid", "profile", "email", "groups"],
                "api_audience": API_AUDIENCE,
                **settings,
            },
        }

    def mint(self, claims: dict[str, Any], *, key: Any = None, kid: str | None = None) -> str:
        """A JWT access token signed with the provider's key (or another one)."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": API_AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "scope": "openid devbench:read devbench:write",
            **claims,
        }
        return jwt.encode(
            body,
            key or self.key,
            algorithm="RS256",
            headers={"kid": kid or self.kid, "typ": "at+jwt"},
        )


def start_provider(accounts: dict[str, Any] | None = None) -> Provider:
    ensure_node_modules(PROVIDER_DIR)
    kid = f"test-{secrets.token_hex(4)}"
    key, jwk = new_signing_key(kid)
    config = {
        "jwks": {"keys": [jwk]},
        "clients": [
            {
                "client_id": WEB_CLIENT_ID,
                "client_secret": WEB_CLIENT_SECRET,
                "redirect_uris": [CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_post",
            },
            {
                "client_id": CLI_CLIENT_ID,
                "redirect_uris": [CLI_REDIRECT],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        ],
        "accounts": accounts if accounts is not None else ACCOUNTS,
        "resources": {
            API_AUDIENCE: {"scope": "devbench:read devbench:write devbench:admin", "ttl": 600},
            OTHER_AUDIENCE: {"scope": "devbench:read", "ttl": 600},
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="devbench-oidc-"))
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / "provider.log"
    process = subprocess.Popen(
        node_argv(str(PROVIDER_DIR / "server.mjs"), str(config_path)),
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
        cwd=PROVIDER_DIR,
        env=node_env({"NODE_ENV": "test"}),
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the provider prints its issuer once it listens
    if not line:
        process.wait(timeout=10)
        raise RuntimeError(f"OIDC test provider did not start: {log_path.read_text()}")
    issuer = json.loads(line)["issuer"]
    return Provider(
        issuer=issuer,
        key=key,
        kid=kid,
        process=process,
        config_path=config_path,
        log_path=log_path,
    )


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"][a["name"]] = a.get("value", "")


def follow_provider(session: requests.Session, url: str, *, login: str, stop_prefix: str) -> str:
    """Follow redirects and fill the provider's sign-in and consent forms like a browser.

    Returns the first URL outside the provider starting with ``stop_prefix`` (the
    client's redirect URI, carrying the code).
    """
    for _ in range(20):
        if url.startswith(stop_prefix):
            return url
        response = session.get(url, allow_redirects=False, timeout=10)
        while response.status_code in (302, 303) or response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if url.startswith(stop_prefix):
                return url
            response = session.get(url, allow_redirects=False, timeout=10)
        response.raise_for_status()
        parser = _FormParser()
        parser.feed(response.text)
        if not parser.forms:
            raise AssertionError(f"no form on provider page {url}: {response.text[:500]}")
        form = parser.forms[0]
        data = dict(form["inputs"])
        if "login" in data:
            data.update(login=login, password="any password")  # dev interactions take any
        action = urljoin(url, form["action"])
        response = session.post(action, data=data, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), response.text[:500]
        url = urljoin(action, response.headers["Location"])
    raise AssertionError("the provider never redirected back to the client")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def cli_tokens(
    provider: Provider,
    *,
    login: str,
    resource: str | None = API_AUDIENCE,
    scope: str = "openid devbench:read devbench:write devbench:admin",
) -> dict[str, Any]:
    """Authorization code + PKCE as a public client (like a CLI would): the token response."""
    verifier, challenge = pkce_pair()
    params = {
        "client_id": CLI_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": CLI_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if resource:
        params["resource"] = resource
    session = requests.Session()
    auth_url = requests.Request("GET", f"{provider.issuer}/auth", params=params).prepare().url
    assert auth_url is not None
    back = follow_provider(session, auth_url, login=login, stop_prefix=CLI_REDIRECT)
    code = parse_qs(urlparse(back).query)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CLI_REDIRECT,
        "client_id": CLI_CLIENT_ID,
        "code_verifier": verifier,
    }
    if resource:
        data["resource"] = resource
    response = requests.post(f"{provider.issuer}/token", data=data, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())
