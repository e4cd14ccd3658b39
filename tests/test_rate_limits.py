"""Rate limits per token and per tenant: REST in-process; MCP and websockets on a live server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import client_for
from tests.mcp_live import raw_post, start_daphne  # noqa: F401 - fixture

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def _assert_limited(answer: Any, scope: str) -> None:
    assert answer.status_code == 429
    body = answer.json()
    assert body["code"] == "rate_limited" and body["extra"]["scope"] == scope
    assert int(answer.headers["Retry-After"]) == body["extra"]["retry_after_s"] >= 1


@pytest.mark.django_db
def test_rest_per_token_then_per_tenant(settings: Any, tenant: Any, make_token: Any) -> None:
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = "3/minute"
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = "5/minute"
    first, second = client_for(make_token(tenant)), client_for(make_token(tenant))
    assert [first.get("/api/v1/me").status_code for _ in range(3)] == [200] * 3
    _assert_limited(first.get("/api/v1/me"), "token")
    # Another token of the tenant has its own bucket, until the tenant's is empty.
    assert [second.get("/api/v1/me").status_code for _ in range(2)] == [200] * 2
    _assert_limited(second.get("/api/v1/me"), "tenant")
    # Another tenant is not affected.
    assert client_for(make_token()).get("/api/v1/me").status_code == 200


@pytest.mark.django_db
def test_unlimited_when_the_settings_are_empty(settings: Any, token: Any) -> None:
    settings.DEVBENCH_RATE_LIMIT_PER_TOKEN = ""
    settings.DEVBENCH_RATE_LIMIT_PER_TENANT = ""
    api = client_for(token)
    assert {api.get("/api/v1/me").status_code for _ in range(20)} == {200}


@pytest.mark.e2e
@pytest.mark.integration
def test_mcp_and_websocket_connects_share_the_token_bucket(
    start_daphne: Any, transactional_db: Any, tenant: Any, make_token: Any
) -> None:
    server = start_daphne(
        "ratelimit",
        {"DEVBENCH_RATE_LIMIT_PER_TOKEN": "4/minute", "DEVBENCH_RATE_LIMIT_PER_TENANT": ""},
    )
    token = make_token(tenant).raw
    url = server.mcp_url(tenant.slug)
    assert [raw_post(url, LIST_TOOLS, token=token).status_code for _ in range(3)] == [200] * 3
    ws_url = server.base_url.replace("http://", "ws://") + "/ws/execs/ex_missing/"
    assert _ws_refusal(ws_url, token) == ("exec_not_found", 4404)  # the 4th hit: counted
    _assert_limited(raw_post(url, LIST_TOOLS, token=token), "token")
    assert _ws_refusal(ws_url, token) == ("rate_limited", 4429)


def _ws_refusal(url: str, token: str) -> tuple[str, int | None]:
    """The error code a websocket is refused with, and its close code."""
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        error = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    return error["code"], closed.value.rcvd.code if closed.value.rcvd else None
