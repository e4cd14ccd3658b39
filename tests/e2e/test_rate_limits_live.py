"""Rate limits on MCP requests and websocket connects, against a live daphne."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.mcp_live import raw_post
from tests.test_rate_limits import assert_limited

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


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
    assert_limited(raw_post(url, LIST_TOOLS, token=token), "token")
    assert _ws_refusal(ws_url, token) == ("rate_limited", 4429)


def _ws_refusal(url: str, token: str) -> tuple[str, int | None]:
    """The error code a websocket is refused with, and its close code."""
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        error = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    return error["code"], closed.value.rcvd.code if closed.value.rcvd else None
