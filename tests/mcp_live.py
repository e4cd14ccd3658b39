"""Live MCP servers and official clients for tests: daphne processes on the test database.

Imported by the conftest of tests/mcp and tests/e2e. Tests that talk to a
live server create their rows with ``transactional_db`` (``live_mcp`` implies
it), so the server process sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.node import ensure_node_modules, node_argv, node_env
from tests.processes import ROOT, TEST_INSTANCE, DaphneServer, service_env

ALLOWED_ORIGIN = "https://agents.example.test"
HANDSHAKE = "legacy"  # 2025-11-25: initialize handshake
MODERN = "2026-07-28"  # single self-contained requests
MODES = (HANDSHAKE, MODERN)


def web_process(db_name: str, name: str, extra_env: dict[str, str] | None = None) -> DaphneServer:
    """A web process whose MCP endpoint also admits the test's browser origin."""
    env = {"MCP_ALLOWED_ORIGINS": ALLOWED_ORIGIN, **(extra_env or {})}
    return DaphneServer(db_name, extra_env=env, name=name)


def _db_name(django_db_blocker: Any) -> str:
    from django.db import connection

    with django_db_blocker.unblock():
        return str(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def mcp_server_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    """One daphne process for the session, on the test database."""
    server = web_process(_db_name(django_db_blocker), "main")
    yield server
    server.stop()


@pytest.fixture
def start_daphne(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[Callable[..., DaphneServer]]:
    """Extra, test-owned web processes (e.g. with other settings)."""
    started: list[DaphneServer] = []
    db_name = _db_name(django_db_blocker)

    def _start(name: str, extra_env: dict[str, str] | None = None) -> DaphneServer:
        server = web_process(db_name, name, extra_env)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def live_mcp(mcp_server_process: DaphneServer, transactional_db: Any) -> DaphneServer:
    """The session's web process, with committed rows visible to it."""
    return mcp_server_process


@asynccontextmanager
async def http_client(
    url: str,
    token: str | None,
    *,
    mode: str = MODERN,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> AsyncIterator[Client]:
    """The official Python client over Streamable HTTP with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(120), transport=transport
        ) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def stdio_params(slug: str, token: str | None, env: dict[str, str]) -> StdioServerParameters:
    """``manage.py mcp_stdio`` on the test database, the token in DEVBENCH_TOKEN."""
    child_env = {**env, "DEVBENCH_INSTANCE": TEST_INSTANCE}
    child_env.pop("DEVBENCH_TOKEN", None)
    if token is not None:
        child_env["DEVBENCH_TOKEN"] = token
    return StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_stdio", "--tenant", slug],
        cwd=str(ROOT),
        env=child_env,
    )


@asynccontextmanager
async def stdio_client(slug: str, token: str | None, env: dict[str, str]) -> AsyncIterator[Client]:
    """The official Python client launching ``manage.py mcp_stdio`` as a subprocess."""
    async with Client(stdio_params(slug, token, env)) as client:
        yield client


@pytest.fixture(scope="session")
def server_env(django_db_setup: Any, django_db_blocker: Any) -> dict[str, str]:
    """Environment of a DevBench process on the test database (for stdio servers)."""
    return service_env(_db_name(django_db_blocker))


def raw_post(
    url: str,
    body: dict[str, Any],
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """One JSON-RPC POST outside any client library (for the HTTP-level checks)."""
    all_headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2025-11-25",
    }
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    return httpx.request(method, url, json=body, headers=all_headers, timeout=60)


JS_CLIENT_DIR = ROOT / "tests" / "mcp_client_js"


@pytest.fixture(scope="session")
def js_client() -> Callable[..., dict[str, Any]]:
    """The TypeScript SDK client (installed with ``npm ci`` when its lock file changed)."""
    ensure_node_modules(JS_CLIENT_DIR)

    def run(url: str, token: str, scenario: str = "list") -> dict[str, Any]:
        done = subprocess.run(
            node_argv("check.mjs", url, scenario),
            cwd=JS_CLIENT_DIR,
            env=node_env({"DEVBENCH_TOKEN": token}),
            capture_output=True,
            timeout=300,
            check=False,
        )
        lines = done.stdout.decode().strip().splitlines()
        assert lines, f"no report from the JS client: {done.stderr.decode()[-3000:]}"
        report: dict[str, Any] = json.loads(lines[-1])
        report["exit_code"] = done.returncode
        return report

    return run


def mcp_call(url: str, token: str, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """One tool call from a fresh official client (2026-07-28: no handshake to pay for)."""

    async def scenario() -> Any:
        async with http_client(url, token) as client:
            return await client.call_tool(name, arguments or {})

    return anyio.run(scenario)


def ok(result: Any) -> dict[str, Any]:
    """The structured content of a successful call (fails the test with the error body)."""
    assert result.is_error is False, result.content
    content: dict[str, Any] = result.structured_content
    return content


def error_body(result: Any) -> dict[str, Any]:
    """The REST error body an error result carries as JSON text (and no structured content)."""
    assert result.is_error is True, result.structured_content
    assert result.structured_content is None, result.structured_content
    assert len(result.content) == 1 and result.content[0].type == "text", result.content
    body: dict[str, Any] = json.loads(result.content[0].text)
    # The id of the HTTP request served, if any (differs per request by design; an
    # in-process or stdio call has none).
    body.pop("request_id", None)
    assert set(body) == {"code", "message", "extra"}, body
    return body


def error_code(result: Any) -> str:
    return str(error_body(result)["code"])
