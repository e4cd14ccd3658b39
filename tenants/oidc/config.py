"""Which OpenID providers DevBench trusts for bearer tokens.

The same list as browser sign-in: allauth's ``openid_connect`` apps, from
settings (``DEVBENCH_OIDC_PROVIDERS``) or the database (SocialApp). Extra keys
in an app's ``settings`` tune bearer tokens:

* ``issuer``: the ``iss`` of its tokens (default: ``server_url`` without
  ``/.well-known/openid-configuration``). Matching a token's issuer needs no
  network call, so a token from an unknown issuer is refused at once.
* ``api_audience``: accepted ``aud`` value(s) of JWT access tokens (default:
  the app's client id).
* ``accept_opaque_tokens``: try non-JWT tokens at this provider's userinfo
  endpoint (default true).

Discovery documents are cached in-process for ``OIDC_DISCOVERY_TTL`` seconds, the
list of apps for ``OIDC_PROVIDERS_CACHE_TTL`` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from tenants.oidc.errors import ProviderUnreachable

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class OidcProvider:
    provider_id: str  # allauth SocialAccount.provider for users of this provider
    issuer: str
    discovery_url: str
    client_id: str
    client_secret: str
    audiences: tuple[str, ...]
    accept_opaque: bool


def _normalize_issuer(url: str) -> str:
    return url.rstrip("/")


def _provider_from_app(app: Any) -> OidcProvider | None:
    app_settings = app.settings or {}
    server_url = str(app_settings.get("server_url") or "")
    if not server_url:
        return None
    if WELL_KNOWN in server_url:
        discovery_url, issuer = server_url, server_url.split(WELL_KNOWN)[0]
    else:
        discovery_url, issuer = server_url.rstrip("/") + WELL_KNOWN, server_url
    audience = app_settings.get("api_audience") or app.client_id
    audiences = (audience,) if isinstance(audience, str) else tuple(audience)
    return OidcProvider(
        provider_id=app.provider_id or app.provider,
        issuer=_normalize_issuer(str(app_settings.get("issuer") or issuer)),
        discovery_url=discovery_url,
        client_id=app.client_id,
        client_secret=app.secret or "",
        audiences=tuple(str(a) for a in audiences if a),
        accept_opaque=bool(app_settings.get("accept_opaque_tokens", True)),
    )


_providers_lock = threading.Lock()
_providers: tuple[float, list[OidcProvider]] | None = None


def provider_list() -> list[OidcProvider]:
    """Every configured OpenID Connect app (database first, then settings).

    Kept in-process for ``OIDC_PROVIDERS_CACHE_TTL`` seconds: reading the apps costs
    more than verifying a token, and they change rarely.
    """
    global _providers
    from allauth.socialaccount.adapter import get_adapter

    now = time.monotonic()
    with _providers_lock:
        cached = _providers
    if cached is not None and cached[0] > now:
        return cached[1]
    providers = []
    for app in get_adapter().list_apps(None, provider="openid_connect"):
        provider = _provider_from_app(app)
        if provider is not None:
            providers.append(provider)
    with _providers_lock:
        _providers = (now + settings.OIDC_PROVIDERS_CACHE_TTL, providers)
    return providers


_discovery_lock = threading.Lock()
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}


def provider_metadata(provider: OidcProvider) -> dict[str, Any]:
    """The provider's discovery document (cached; fetched at most once per TTL)."""
    now = time.monotonic()
    with _discovery_lock:
        cached = _discovery.get(provider.discovery_url)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        response = requests.get(provider.discovery_url, timeout=settings.OIDC_HTTP_TIMEOUT)
        response.raise_for_status()
        metadata = response.json()
        if not isinstance(metadata, dict) or "jwks_uri" not in metadata:
            raise ValueError("no jwks_uri in the discovery document")
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnreachable(
            f"The identity provider '{provider.provider_id}' cannot be reached; try again later.",
            provider=provider.provider_id,
        ) from exc
    with _discovery_lock:
        _discovery[provider.discovery_url] = (now + settings.OIDC_DISCOVERY_TTL, metadata)
    return metadata


def reset_provider_caches() -> None:
    global _providers
    with _providers_lock:
        _providers = None
    with _discovery_lock:
        _discovery.clear()


def oidc_issuers() -> list[str]:
    """Issuers whose access tokens are accepted (blocking: apps may live in the DB)."""
    return [provider.issuer for provider in provider_list()]
