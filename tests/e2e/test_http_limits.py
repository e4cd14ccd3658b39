"""Request size limits and log redaction of both live web servers.

The same guarantees from daphne (embedded mode, tests) and from ``scripts/serve``
(gunicorn + uvicorn workers, production): 431 for headers over the limit (also a
header line that never ends), 413 in the shared error shape for bodies over the
limit (declared or chunked), and no secret (``?token=``, ``Authorization``) in any
log line, accepted or refused.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from core.http_limits import RedactSecrets, redact
from tests.mcp_live import web_process
from tests.processes import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BODY_LIMIT = {"DEVBENCH_MAX_REQUEST_BODY_BYTES": "4096"}


@pytest.fixture(scope="module", params=["daphne", "serve"])
def server(request: Any, django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = str(connection.settings_dict["NAME"])
    if request.param == "daphne":
        process: Any = web_process(db_name, "limits", BODY_LIMIT)
    else:
        process = ServeProcess(db_name, extra_env=BODY_LIMIT)
    yield process
    process.stop()


def _raw(server: Any, request: bytes) -> bytes:
    """Send ``request`` whole, then read the answer until the server ends it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _logs(server: Any) -> str:
    """Everything the server logged: its access log and its own output."""
    access = Path(server.access_log).read_text(errors="replace")
    return access + server.log_path.read_text(errors="replace")


def test_a_huge_authorization_header_answers_431(server: Any) -> None:
    answer = httpx.get(f"{server.base_url}/api/v1/me", headers={"Authorization": "x" * 100_000})
    assert answer.status_code == 431
    assert answer.json()["code"] == "request_header_too_large"
    assert answer.json()["extra"] == {"limit_bytes": 32 * 1024}


def test_a_websocket_handshake_with_huge_headers_answers_431(server: Any) -> None:
    ws_url = server.base_url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{ws_url}/ws/execs/ex_missing/", additional_headers={"X-Big": "x" * 100_000})
    assert refused.value.response.status_code == 431


def test_many_headers_over_the_total_answer_431(server: Any) -> None:
    headers = {f"X-Filler-{i}": "y" * 1000 for i in range(40)}
    answer = httpx.get(f"{server.base_url}/healthz", headers=headers)
    assert answer.status_code == 431
    # Headers within the limit are fine.
    small = {f"X-Filler-{i}": "y" * 1000 for i in range(5)}
    assert httpx.get(f"{server.base_url}/healthz", headers=small).status_code == 200


def test_a_header_line_that_never_ends_is_refused_not_buffered(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        answer = b""
        deadline = time.monotonic() + 20
        try:
            # Keep sending the one line until the server answers (it must, well before 1 MB).
            for _ in range(64):
                sock.sendall(b"z" * 16384)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while time.monotonic() < deadline and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"request_header_too_large"' in answer


def test_bodies_over_the_limit_answer_413_declared_or_chunked(server: Any) -> None:
    declared = httpx.post(f"{server.base_url}/api/v1/workspaces", content=b"{" * 10_000)
    assert declared.status_code == 413
    assert declared.json() == {
        "code": "request_body_too_large",
        "message": "The request body exceeds 4096 bytes.",
        "extra": {"limit_bytes": 4096},
    }

    def chunks() -> Any:
        for _ in range(10):
            yield b"z" * 1000

    chunked = httpx.post(f"{server.base_url}/api/v1/workspaces", content=chunks())
    assert chunked.status_code == 413
    assert chunked.json()["code"] == "request_body_too_large"
    # The MCP endpoint sits behind the same limit.
    mcp = httpx.post(f"{server.base_url}/mcp/acme/", content=b"[" * 10_000)
    assert mcp.status_code == 413
    # A declared length over the limit is refused before the body is sent at all.
    head = b"POST /api/v1/workspaces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n"
    head += b"Connection: close\r\n\r\n"
    assert _raw(server, head).startswith(b"HTTP/1.1 413 ")
    small = httpx.post(f"{server.base_url}/api/v1/workspaces", json={})
    assert small.status_code == 401  # within the limit: the application answers


def test_secrets_never_reach_any_log(server: Any) -> None:
    secret = "dbt_refusedsecretvalue0123456789"
    bearer = "dbt_refusedbearervalue9876543210"
    httpx.get(f"{server.base_url}/api/v1/me", params={"token": secret, "x": "1"})
    httpx.get(f"{server.base_url}/api/v1/me", headers={"Authorization": f"Bearer {bearer}"})
    ws_url = server.base_url.replace("http://", "ws://")
    with connect(f"{ws_url}/ws/execs/ex_missing/?token={secret}") as ws:
        ws.recv(timeout=10)
    deadline = time.monotonic() + 10
    while "token=[redacted]&x=1" not in _logs(server) and time.monotonic() < deadline:
        time.sleep(0.1)  # gunicorn's log handlers flush as they write; allow a moment
    logs = _logs(server)
    assert "token=[redacted]&x=1" in logs
    assert "/ws/execs/ex_missing/" in logs  # the websocket connect was logged, redacted
    assert secret not in logs
    assert bearer not in logs


def test_redact() -> None:
    assert redact("/p?token=abc&b=2") == "/p?token=[redacted]&b=2"
    assert redact("/p?a=1&access_token=xyz") == "/p?a=1&access_token=[redacted]"
    assert redact("/p?tokens=abc") == "/p?tokens=abc"


def test_the_log_filter_scrubs_the_message_and_its_arguments() -> None:
    import logging

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s" %d',
        ("1.2.3.4", "GET", "/a?token=s", 200),
        None,
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /a?token=[redacted]" 200'
