"""MCP with OIDC access tokens from a real provider: RFC 9728 discovery and bearer use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tests.factories import MembershipRuleFactory, TenantFactory
from tests.identity.oidc import PROVIDER_ID, Provider, cli_tokens, start_provider
from tests.mcp_live import http_client, raw_post
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e]

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    started = start_provider()
    yield started
    started.stop()


@pytest.fixture
def oidc_server(provider: Provider, start_daphne: Any, transactional_db: Any) -> DaphneServer:
    apps = json.dumps([provider.app_config()])
    return start_daphne("oidc", {"DEVBENCH_OIDC_PROVIDERS": apps})


@pytest.fixture
def acme(transactional_db: Any) -> Any:
    tenant = TenantFactory(slug="acme")
    MembershipRuleFactory(
        provider_id=PROVIDER_ID, claim="groups", value="acme-viewers", tenant=tenant, role="viewer"
    )
    return tenant


def test_unauthenticated_answer_points_to_the_metadata(
    oidc_server: DaphneServer, provider: Provider, acme: Any
) -> None:
    response = raw_post(oidc_server.mcp_url("acme"), LIST)
    assert response.status_code == 401
    metadata_url = f"{oidc_server.base_url}/.well-known/oauth-protected-resource/mcp/acme"
    assert f'resource_metadata="{metadata_url}"' in response.headers["WWW-Authenticate"]

    metadata = httpx.get(metadata_url)
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["resource"] == f"{oidc_server.base_url}/mcp/acme"
    assert body["authorization_servers"] == [provider.issuer]
    assert body["bearer_methods_supported"] == ["header"]
    assert "devbench:read" in body["scopes_supported"]


def test_metadata_reveals_no_tenant_names(oidc_server: DaphneServer, acme: Any) -> None:
    known = httpx.get(f"{oidc_server.base_url}/.well-known/oauth-protected-resource/mcp/acme")
    unknown = httpx.get(f"{oidc_server.base_url}/.well-known/oauth-protected-resource/mcp/zzz")
    assert known.status_code == unknown.status_code == 200


def test_provider_access_token_works_with_role_scopes(
    oidc_server: DaphneServer, provider: Provider, acme: Any
) -> None:
    access_token = str(cli_tokens(provider, login="bob")["access_token"])  # acme viewer

    async def scenario() -> Any:
        async with http_client(oidc_server.mcp_url("acme"), access_token) as client:
            return await client.call_tool("system_status", {})

    result = anyio.run(scenario)
    assert result.is_error is False
    assert result.structured_content["principal_kind"] == "oidc"
    assert result.structured_content["scopes"] == ["read"]


def test_provider_access_token_is_404_on_a_tenant_it_has_no_membership_in(
    oidc_server: DaphneServer, provider: Provider, acme: Any
) -> None:
    TenantFactory(slug="beta")
    access_token = str(cli_tokens(provider, login="bob")["access_token"])
    response = raw_post(oidc_server.mcp_url("beta"), LIST, token=access_token)
    assert response.status_code == 404
    assert response.json()["code"] == "tenant_not_found"
