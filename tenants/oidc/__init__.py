"""OIDC access tokens as bearer credentials for REST, MCP and websockets.

``validate_bearer`` is registered with ``tenants.auth`` at start-up (see
``tenants.apps``), so ``authenticate_bearer`` accepts API tokens and OIDC
tokens alike. Users are linked by (issuer, subject): the allauth
``SocialAccount`` (provider id, uid = ``sub``) that browser sign-in uses too.
"""

from __future__ import annotations


def reset_caches() -> None:
    """Forget the provider list, discovery documents and key sets (tests; changes by hand)."""
    from tenants.oidc.config import reset_provider_caches
    from tenants.oidc.verify import reset_key_cache

    reset_provider_caches()
    reset_key_cache()
