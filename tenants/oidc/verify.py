"""Turn an OIDC access token into verified claims.

* JWT access tokens: signature against the provider's JWKS (PyJWT's
  PyJWKClient: the key set is cached for ``OIDC_JWKS_TTL``; an unknown ``kid``
  triggers one refresh, at most once per ``OIDC_JWKS_REFRESH_COOLDOWN``), then
  issuer, audience, ``exp`` and ``nbf``. No network call while the key is cached.
* Opaque tokens: the provider's userinfo endpoint through mozilla-django-oidc's
  backend; answers (and refusals) are cached for ``OIDC_USERINFO_CACHE_TTL``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from django.conf import settings
from django.core.cache import cache
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from tenants.errors import TokenAudience, TokenExpired, TokenInvalid
from tenants.oidc.config import OidcProvider, provider_metadata
from tenants.oidc.errors import ProviderUnreachable

# Asymmetric algorithms only: "none" and HMAC (a shared secret) never verify a bearer token.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Claims only ID tokens carry: an ID token is proof of sign-in to a client, not an API grant.
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash")


@dataclass(frozen=True)
class TokenIdentity:
    provider: OidcProvider
    subject: str
    claims: dict[str, Any]
    kind: str  # "jwt" or "opaque"


def looks_like_jwt(raw: str) -> bool:
    return raw.count(".") == 2


# --- JWT ---------------------------------------------------------------------

_jwks_lock = threading.Lock()
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def _jwks_client(jwks_uri: str) -> jwt.PyJWKClient:
    with _jwks_lock:
        client = _jwks_clients.get(jwks_uri)
        if client is None:
            client = jwt.PyJWKClient(
                jwks_uri,
                cache_jwk_set=True,
                lifespan=settings.OIDC_JWKS_TTL,
                timeout=settings.OIDC_HTTP_TIMEOUT,
                cooldown_duration=settings.OIDC_JWKS_REFRESH_COOLDOWN,
            )
            _jwks_clients[jwks_uri] = client
        return client


def _signing_key(provider: OidcProvider, kid: str) -> jwt.PyJWK:
    metadata = provider_metadata(provider)
    try:
        return _jwks_client(str(metadata["jwks_uri"])).get_signing_key(kid)
    except jwt.PyJWKClientConnectionError as exc:
        raise ProviderUnreachable(
            f"The identity provider '{provider.provider_id}' cannot be reached; try again later.",
            provider=provider.provider_id,
        ) from exc
    except jwt.PyJWKClientError as exc:
        raise TokenInvalid("The token is not signed by a key of its issuer.") from exc


def verify_jwt(raw: str, *, providers: list[OidcProvider]) -> TokenIdentity:
    try:
        header = jwt.get_unverified_header(raw)
        unverified = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenInvalid("The token is not a well-formed JWT.") from exc
    alg, kid, issuer = header.get("alg"), header.get("kid"), unverified.get("iss")
    if alg not in ALLOWED_ALGORITHMS or not isinstance(kid, str) or not isinstance(issuer, str):
        raise TokenInvalid("The token is not a well-formed JWT.")
    wanted = issuer.rstrip("/")
    provider = next((p for p in providers if p.issuer == wanted), None)
    if provider is None:
        raise TokenInvalid("The token's issuer is not trusted.")
    key = _signing_key(provider, kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key=key,
            algorithms=[alg],
            issuer=provider.issuer,
            audience=list(provider.audiences),
            leeway=settings.OIDC_LEEWAY,
            options={"require": ["exp", "iss", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("The token has expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenAudience("The token is not meant for this service (audience).") from exc
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":
            raise TokenAudience("The token names no audience.") from exc
        raise TokenInvalid(f"The token lacks the '{exc.claim}' claim.") from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid() from exc
    if any(name in claims for name in _ID_TOKEN_CLAIMS):
        raise TokenInvalid("An ID token is not an access token.")
    return TokenIdentity(provider=provider, subject=str(claims["sub"]), claims=claims, kind="jwt")


# --- Opaque tokens -----------------------------------------------------------


class UserinfoBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, bound to one provider instead of global settings.

    Only ``get_userinfo`` is used: it is never an authentication backend, which
    would match users by email.
    """

    def __init__(self, *, userinfo_endpoint: str) -> None:
        self.OIDC_OP_USER_ENDPOINT = userinfo_endpoint

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        if attr == "OIDC_TIMEOUT":
            return settings.OIDC_HTTP_TIMEOUT
        return getattr(settings, attr, args[0] if args else None)


_NEGATIVE = "invalid"


def _userinfo_cache_key(provider: OidcProvider, raw: str) -> str:
    digest = hashlib.sha256(f"{provider.provider_id}\0{raw}".encode()).hexdigest()
    return f"devbench:oidc:userinfo:{digest}"


def _userinfo(provider: OidcProvider, raw: str) -> dict[str, Any] | None:
    """Claims for the token, or None if this provider does not know it."""
    key = _userinfo_cache_key(provider, raw)
    cached = cache.get(key)
    if cached == _NEGATIVE:
        return None
    if isinstance(cached, dict):
        return cached
    endpoint = provider_metadata(provider).get("userinfo_endpoint")
    if not endpoint:
        return None
    try:
        claims = UserinfoBackend(userinfo_endpoint=str(endpoint)).get_userinfo(raw, None, None)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (400, 401, 403):
            cache.set(key, _NEGATIVE, settings.OIDC_USERINFO_CACHE_TTL)
            return None
        raise ProviderUnreachable(provider=provider.provider_id) from exc
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnreachable(provider=provider.provider_id) from exc
    if not isinstance(claims, dict) or not claims.get("sub"):
        cache.set(key, _NEGATIVE, settings.OIDC_USERINFO_CACHE_TTL)
        return None
    cache.set(key, claims, settings.OIDC_USERINFO_CACHE_TTL)
    return claims


def verify_opaque(raw: str, *, providers: list[OidcProvider]) -> TokenIdentity | None:
    """Ask each provider that accepts opaque tokens; None if no provider knows the token."""
    unreachable: ProviderUnreachable | None = None
    for provider in providers:
        if not provider.accept_opaque:
            continue
        try:
            claims = _userinfo(provider, raw)
        except ProviderUnreachable as exc:
            unreachable = exc  # the token may be this provider's: say so unless another knows it
            continue
        if claims is not None:
            return TokenIdentity(
                provider=provider, subject=str(claims["sub"]), claims=claims, kind="opaque"
            )
    if unreachable is not None:
        raise unreachable
    return None


def reset_key_cache() -> None:
    with _jwks_lock:
        _jwks_clients.clear()
