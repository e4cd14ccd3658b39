"""Many clients waiting at once on a live daphne: every one is answered correctly.

Each wait outlasts the channel layer's blocking receive (5 s), which is where
waiters used to fail with a Redis read timeout.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from websockets.sync.client import connect

from tests.mcp_live import http_client, ok
from tests.processes import DaphneServer, ManagedProcess, free_port, port_open

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

N = 50


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Any:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = DaphneServer(db_name)
    yield daphne
    daphne.stop()


def _client(server: DaphneServer, token: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url(),
        headers={"Authorization": f"Bearer {token.raw}"},
        timeout=120,
        limits=httpx.Limits(max_connections=N + 5),
    )


def test_fifty_long_polls_on_one_exec(
    server: DaphneServer, running_workspace: Any, token: Any
) -> None:
    path = f"/api/v1/workspaces/{running_workspace.public_id}/execs"

    async def scenario() -> list[httpx.Response]:
        async with _client(server, token) as http:
            started = await http.post(path, json={"cmd": ["sh", "-c", "sleep 7; echo done"]})
            exec_id = started.json()["exec_id"]
            polls = [http.get(f"/api/v1/execs/{exec_id}", params={"wait_s": 20}) for _ in range(N)]
            return await asyncio.gather(*polls)

    answers = asyncio.run(scenario())
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers][:3]
    assert all([m["data"] for m in r.json()["messages"]] == ["done\n"] for r in answers)


def test_fifty_concurrent_exec_runs(
    server: DaphneServer, running_workspace: Any, token: Any
) -> None:
    from tenants.models import TenantPolicy

    TenantPolicy.objects.filter(tenant=running_workspace.tenant).update(max_concurrent_execs=N)
    path = f"/api/v1/workspaces/{running_workspace.public_id}/execs"

    async def scenario() -> list[httpx.Response]:
        async with _client(server, token) as http:
            runs = [
                http.post(path, json={"cmd": ["sh", "-c", f"sleep 6; echo {i}"], "wait": True})
                for i in range(N)
            ]
            return await asyncio.gather(*runs)

    answers = asyncio.run(scenario())
    assert [r.status_code for r in answers] == [200] * N, [
        r.text for r in answers if r.status_code != 200
    ][:3]
    outputs = sorted(int(r.json()["stdout"]) for r in answers)
    assert outputs == list(range(N))
    assert {r.json()["status"] for r in answers} == {"completed"}


class OwnRedis(ManagedProcess):
    """A test-owned redis-server for the channel layer, to pause and kill."""

    what = "redis-server"
    stop_grace_s = 5.0

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]  # fmt: skip
        super().__init__(argv, env={}, log_name=f"redis-{self.port}")

    def is_ready(self) -> bool:
        return port_open(self.port)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[OwnRedis]:
    redis = OwnRedis()
    yield redis
    redis.proc.send_signal(signal.SIGCONT)
    redis.stop()


@pytest.fixture(scope="module")
def hiccup_server(django_db_setup: Any, django_db_blocker: Any, own_redis: OwnRedis) -> Any:
    """Daphne whose channel layer lives on ``own_redis`` (the broker stays the shared one)."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = DaphneServer(db_name, extra_env={"CHANNEL_LAYER_URL": own_redis.url})
    yield daphne
    daphne.stop()


def _start(http: httpx.Client, workspace: Any, script: str) -> str:
    path = f"/api/v1/workspaces/{workspace.public_id}/execs"
    response = http.post(path, json={"cmd": ["sh", "-c", script]})
    assert response.status_code == 202, response.text
    return str(response.json()["exec_id"])


def _poll_all(http: httpx.Client, exec_id: str, n: int) -> list[httpx.Response]:
    def poll(_: int) -> httpx.Response:
        return http.get(f"/api/v1/execs/{exec_id}", params={"wait_s": 20})

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(poll, range(n)))


def _sync_client(server: DaphneServer, token: Any) -> httpx.Client:
    return httpx.Client(
        base_url=server.url(), headers={"Authorization": f"Bearer {token.raw}"}, timeout=60
    )


def test_waits_answer_from_the_database_while_redis_is_paused(
    hiccup_server: DaphneServer, own_redis: OwnRedis, running_workspace: Any, token: Any
) -> None:
    with _sync_client(hiccup_server, token) as http:
        exec_id = _start(http, running_workspace, "sleep 8; echo done")
        with ThreadPoolExecutor(1) as pool:
            polls = pool.submit(_poll_all, http, exec_id, 10)
            time.sleep(1)  # the waiters are subscribed and blocked in the layer's receive
            own_redis.proc.send_signal(signal.SIGSTOP)
            try:
                answers = polls.result(timeout=60)
            finally:
                own_redis.proc.send_signal(signal.SIGCONT)
    assert [r.status_code for r in answers] == [200] * 10, answers[0].text
    assert all([m["data"] for m in r.json()["messages"]] == ["done\n"] for r in answers)


def test_waits_and_websockets_answer_while_redis_is_down(
    hiccup_server: DaphneServer, own_redis: OwnRedis, running_workspace: Any, token: Any
) -> None:
    own_redis.proc.kill()
    own_redis.proc.wait()
    try:
        with _sync_client(hiccup_server, token) as http:
            exec_id = _start(http, running_workspace, "sleep 6; echo late")
            with connect(
                hiccup_server.ws_url(f"/ws/execs/{exec_id}/"),
                additional_headers={"Authorization": f"Bearer {token.raw}"},
                open_timeout=10,
            ) as ws:
                answers = _poll_all(http, exec_id, 5)
                frames = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
            run = http.post(
                f"/api/v1/workspaces/{running_workspace.public_id}/execs",
                json={"cmd": ["sh", "-c", "sleep 6; echo ran"], "wait": True},
            )
    finally:
        own_redis.restart()
    assert [r.status_code for r in answers] == [200] * 5, answers[0].text
    assert all([m["data"] for m in r.json()["messages"]] == ["late\n"] for r in answers)
    assert frames[0]["type"] == "output" and frames[0]["data"] == "late\n"
    assert frames[1]["type"] == "complete"
    assert (run.status_code, run.json()["stdout"]) == (200, "ran\n")
    # With Redis back, a new wait is woken through the layer again.
    with _sync_client(hiccup_server, token) as http:
        exec_id = _start(http, running_workspace, "echo back")
        polled = http.get(f"/api/v1/execs/{exec_id}", params={"wait_s": 20})
    assert [m["data"] for m in polled.json()["messages"]] == ["back\n"]


MCP_N = 20


def test_concurrent_mcp_exec_runs(server: DaphneServer, running_workspace: Any, token: Any) -> None:
    from tenants.models import TenantPolicy

    TenantPolicy.objects.filter(tenant=running_workspace.tenant).update(max_concurrent_execs=MCP_N)
    url = server.url(f"/mcp/{running_workspace.tenant.slug}/")
    script = "sleep 6; echo {i}"

    async def one(i: int) -> Any:
        async with http_client(url, token.raw) as client:
            args = {"container_id": running_workspace.public_id, "cmd": ["sh", "-c", script]}
            args["cmd"][2] = script.format(i=i)
            return ok(await client.call_tool("exec_run", args))

    async def scenario() -> list[Any]:
        return list(await asyncio.gather(*(one(i) for i in range(MCP_N))))

    results = anyio.run(scenario)
    assert sorted(int(r["stdout"]) for r in results) == list(range(MCP_N))
    assert {r["status"] for r in results} == {"completed"}
