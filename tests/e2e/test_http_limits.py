"""Request size limits and access-log redaction of the live web server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from core.http_server import redact
from tests.mcp_live import web_process
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = web_process(db_name, "limits", {"DEVBENCH_MAX_REQUEST_BODY_BYTES": "4096"})
    yield daphne
    daphne.stop()


def _raw(server: Any, request: bytes) -> bytes:
    """Send ``request`` whole, then read the answer until the server ends it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_huge_authorization_header_answers_431(server: Any) -> None:
    answer = httpx.get(f"{server.base_url}/api/v1/me", headers={"Authorization": "x" * 100_000})
    assert answer.status_code == 431
    assert answer.json()["code"] == "request_header_too_large"
    assert answer.json()["extra"] == {"limit_bytes": 32 * 1024}


def test_many_headers_over_the_total_answer_431(server: Any) -> None:
    headers = {f"X-Filler-{i}": "y" * 1000 for i in range(40)}
    answer = httpx.get(f"{server.base_url}/healthz", headers=headers)
    assert answer.status_code == 431
    # Headers within the limit are fine.
    small = {f"X-Filler-{i}": "y" * 1000 for i in range(5)}
    assert httpx.get(f"{server.base_url}/healthz", headers=small).status_code == 200


def test_bodies_over_the_limit_answer_413_declared_or_chunked(server: Any) -> None:
    declared = httpx.post(f"{server.base_url}/api/v1/workspaces", content=b"{" * 10_000)
    assert declared.status_code == 413
    assert declared.json()["code"] == "request_body_too_large"

    def chunks() -> Any:
        for _ in range(10):
            yield b"z" * 1000

    chunked = httpx.post(f"{server.base_url}/api/v1/workspaces", content=chunks())
    assert chunked.status_code == 413
    # A declared length over the limit is refused before the body is sent at all.
    head = b"POST /api/v1/workspaces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n"
    head += b"\r\n"
    assert _raw(server, head).startswith(b"HTTP/1.1 413 ")
    small = httpx.post(f"{server.base_url}/api/v1/workspaces", json={})
    assert small.status_code == 401  # within the limit: the application answers


def test_secret_query_values_never_reach_the_access_log(server: Any) -> None:
    secret = "dbt_refusedsecretvalue0123456789"
    httpx.get(f"{server.base_url}/api/v1/me", params={"token": secret, "x": "1"})
    ws_url = server.base_url.replace("http://", "ws://")
    with connect(f"{ws_url}/ws/execs/ex_missing/?token={secret}") as ws:
        ws.recv(timeout=10)
    log = server.access_log.read_text()
    assert secret not in log
    assert "token=[redacted]&x=1" in log


def test_redact() -> None:
    assert redact("/p?token=abc&b=2") == "/p?token=[redacted]&b=2"
    assert redact("/p?a=1&access_token=xyz") == "/p?a=1&access_token=[redacted]"
    assert redact("/p?tokens=abc") == "/p?tokens=abc"
