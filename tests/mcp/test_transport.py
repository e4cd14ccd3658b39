"""The Streamable HTTP endpoint of a live web process: auth, tenancy, host/origin, protocols."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import httpx2
import pytest
from django.utils import timezone

from tests import bodies
from tests.mcp_live import (
    ALLOWED_ORIGIN,
    HANDSHAKE,
    MODERN,
    MODES,
    DaphneServer,
    error_body,
    http_client,
    raw_post,
)

pytestmark = [pytest.mark.e2e]

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


@pytest.mark.parametrize("mode", MODES)
def test_both_protocol_generations_list_and_call(
    live_mcp: DaphneServer, tenant: Any, token: Any, mode: str
) -> None:
    async def scenario() -> tuple[str, list[Any], Any, Any]:
        async with http_client(live_mcp.mcp_url(tenant.slug), token.raw, mode=mode) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("system_status", {})
            # A tool with an output schema failing: the client returns the error result.
            failed = await client.call_tool("kill", {"container_id": "ws_doesnotexist00"})
            return client.protocol_version, tools, result, failed

    version, tools, result, failed = anyio.run(scenario)
    assert version == ("2025-11-25" if mode == HANDSHAKE else MODERN)
    status = next(t for t in tools if t.name == "system_status")
    assert status.annotations is not None and status.annotations.read_only_hint is True
    assert status.output_schema is not None
    assert result.is_error is False
    body = result.structured_content
    assert body["tenant"] == {"slug": tenant.slug, "name": tenant.name}
    assert body["scopes"] == ["read", "write"]
    assert body["engine"]["reachable"] is True and body["engine"]["version"]
    assert body["policy"]["default_image"] == "devbench/busybox:latest"
    assert body["workspaces"] == {"total": 0} and body["execs"] == {"total": 0}
    assert next(t for t in tools if t.name == "kill").output_schema is not None
    assert error_body(failed)["code"] == "workspace_not_found"


def test_without_slash_is_the_same_endpoint(
    live_mcp: DaphneServer, tenant: Any, token: Any
) -> None:
    response = raw_post(live_mcp.mcp_url(tenant.slug).rstrip("/"), LIST, token=token.raw)
    assert response.status_code == 200
    assert "system_status" in response.text


def test_missing_token_is_401_with_challenge(live_mcp: DaphneServer, tenant: Any) -> None:
    response = raw_post(live_mcp.mcp_url(tenant.slug), LIST)
    assert response.status_code == 401
    assert response.json()["code"] == "token_missing"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert "error=" not in challenge  # RFC 6750: no error code without credentials
    assert "resource_metadata" not in challenge  # no OIDC issuer configured here


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("dbt_aaaaaaaa_" + "a" * 43, "token_invalid"),
        ("not-a-token", "token_malformed"),
    ],
)
def test_bad_tokens_are_401_with_their_code(
    live_mcp: DaphneServer, tenant: Any, raw: str, code: str
) -> None:
    response = raw_post(live_mcp.mcp_url(tenant.slug), LIST, token=raw)
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_revoked_token_is_refused(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    token.revoked_at = timezone.now()
    token.save()
    response = raw_post(live_mcp.mcp_url(tenant.slug), LIST, token=token.raw)
    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"


def test_other_tenant_is_404_like_a_missing_one(
    live_mcp: DaphneServer, tenant: Any, other_tenant: Any, token: Any
) -> None:
    foreign = raw_post(live_mcp.mcp_url(other_tenant.slug), LIST, token=token.raw)
    missing = raw_post(live_mcp.mcp_url("no-such-tenant"), LIST, token=token.raw)
    assert foreign.status_code == missing.status_code == 404
    assert bodies.error_body(foreign) == bodies.error_body(missing)
    assert foreign.json()["code"] == "tenant_not_found"


def test_foreign_host_is_refused(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    # DNS rebinding: a hostile name resolving to this server.
    response = raw_post(
        live_mcp.mcp_url(tenant.slug), LIST, token=token.raw, headers={"Host": "evil.example"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("http://evil.example", False), (ALLOWED_ORIGIN, True), (None, True)],
)
def test_origin_rules(
    live_mcp: DaphneServer, tenant: Any, token: Any, origin: str | None, allowed: bool
) -> None:
    headers = {"Origin": origin} if origin else {}
    response = raw_post(live_mcp.mcp_url(tenant.slug), LIST, token=token.raw, headers=headers)
    if allowed:
        assert response.status_code == 200
        if origin:
            assert response.headers["Access-Control-Allow-Origin"] == origin
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "origin_not_allowed"


def test_same_origin_page_and_preflight(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    same = live_mcp.base_url
    response = raw_post(
        live_mcp.mcp_url(tenant.slug), LIST, token=token.raw, headers={"Origin": same}
    )
    assert response.status_code == 200
    preflight = httpx.options(
        live_mcp.mcp_url(tenant.slug),
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_request_id_is_kept_or_made(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    kept = raw_post(
        live_mcp.mcp_url(tenant.slug), LIST, token=token.raw, headers={"X-Request-ID": "trace-42"}
    )
    assert kept.headers["X-Request-ID"] == "trace-42"
    made = raw_post(
        live_mcp.mcp_url(tenant.slug), LIST, token=token.raw, headers={"X-Request-ID": "bad id!"}
    )
    assert len(made.headers["X-Request-ID"]) == 32


def test_protected_resource_metadata_absent_without_oidc(live_mcp: DaphneServer) -> None:
    response = httpx.get(f"{live_mcp.base_url}/.well-known/oauth-protected-resource/mcp/acme")
    assert response.status_code == 404


def test_other_paths_still_reach_django(live_mcp: DaphneServer) -> None:
    assert httpx.get(f"{live_mcp.base_url}/healthz").json() == {"status": "ok"}


def test_tool_metrics_are_exported(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    async def scenario() -> None:
        async with http_client(live_mcp.mcp_url(tenant.slug), token.raw) as client:
            await client.call_tool("system_status", {"unexpected": 1})

    anyio.run(scenario)
    metrics = httpx.get(f"{live_mcp.base_url}/metrics").text
    assert 'devbench_mcp_tool_calls_total{outcome="validation_failed",tool="system_status"}' in (
        metrics
    )
    assert "devbench_mcp_http_requests_total" in metrics


def test_stateless_two_processes_answer_alternately(
    live_mcp: DaphneServer, start_daphne: Any, tenant: Any, token: Any
) -> None:
    second = start_daphne("second")
    ports = [live_mcp.port, second.port]

    class Alternating(httpx2.AsyncBaseTransport):
        """Sends each request to the next process, like a round-robin balancer."""

        def __init__(self) -> None:
            self.inner = httpx2.AsyncHTTPTransport()
            self.count = 0

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            request.url = request.url.copy_with(port=ports[self.count % 2])
            self.count += 1
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def scenario(mode: str) -> list[bool]:
        async with http_client(
            live_mcp.mcp_url(tenant.slug), token.raw, mode=mode, transport=Alternating()
        ) as client:
            results = []
            for _ in range(3):
                await client.list_tools()
                result = await client.call_tool("system_status", {})
                results.append(result.is_error)
            return results

    before = (live_mcp.mcp_requests_served(), second.mcp_requests_served())
    for mode in MODES:
        assert anyio.run(scenario, mode) == [False, False, False]
    assert live_mcp.mcp_requests_served() - before[0] >= 4
    assert second.mcp_requests_served() - before[1] >= 4


def test_get_stream_is_405_without_sessions(
    live_mcp: DaphneServer, tenant: Any, token: Any
) -> None:
    response = httpx.get(
        live_mcp.mcp_url(tenant.slug),
        headers={"Authorization": f"Bearer {token.raw}", "Accept": "text/event-stream"},
        timeout=10,
    )
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_refused(live_mcp: DaphneServer, tenant: Any, token: Any) -> None:
    response = httpx.post(
        live_mcp.mcp_url(tenant.slug),
        content=b"x" * (17 * 1024 * 1024),
        headers={
            "Authorization": f"Bearer {token.raw}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        timeout=60,
    )
    assert response.status_code == 413


def test_plain_http_is_redirected_when_https_is_required(
    start_daphne: Any, transactional_db: Any, tenant: Any, token: Any
) -> None:
    server = start_daphne(
        "https", {"SECURE_SSL_REDIRECT": "true", "SECURE_PROXY_SSL_HEADER": "true"}
    )
    url = server.mcp_url(tenant.slug)
    plain = raw_post(url, LIST, token=token.raw)
    assert plain.status_code == 308  # keeps the method: a client may follow it with its POST
    assert plain.headers["Location"] == f"https://127.0.0.1:{server.port}/mcp/{tenant.slug}/"
    assert plain.json()["code"] == "https_required"
    behind_tls_proxy = raw_post(url, LIST, token=token.raw, headers={"X-Forwarded-Proto": "https"})
    assert behind_tls_proxy.status_code == 200
