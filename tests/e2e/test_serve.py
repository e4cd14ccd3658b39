"""scripts/serve: the production web server (gunicorn + uvicorn workers) with real clients.

Two worker processes on 127.0.0.1 serve REST, MCP (the official Python client,
both protocol generations, many fresh connections) and a websocket exec stream.
The MCP endpoint relies on no ASGI lifespan: each worker starts its session
manager on its own event loop at its first request.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.mcp_live import MODES, error_code, http_client, ok
from tests.processes import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def served(live_worker: Any) -> Any:
    from django.db import connection

    server = ServeProcess(str(connection.settings_dict["NAME"]))
    yield server
    server.stop()


def _alive_children(parent: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] not in "ZX":
            children.add(int(stat.parent.name))
    return children


def test_two_workers_serve_http_mcp_and_a_websocket_stream(
    served: ServeProcess, tenant: Any, token: Any
) -> None:
    workers = served.worker_pids()
    assert len(workers) == 2
    assert workers <= _alive_children(served.proc.pid)
    headers = {"Authorization": f"Bearer {token.raw}"}

    with httpx.Client(base_url=served.base_url, headers=headers, timeout=120) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get("/api/v1/me").json()["tenant"]["slug"] == tenant.slug
        assert "server" not in http.get("/healthz").headers  # no software banner
        spawned = http.post("/api/v1/workspaces", json={"image": "devbench/busybox:latest"})
        assert spawned.status_code == 201, spawned.text
        ws_id = spawned.json()["id"]
        try:
            _mcp_both_generations(served, tenant, token, ws_id)
            _websocket_stream(served, http, token, ws_id)
            _streamed_download(http, ws_id)
            _raw_uploads(http, ws_id, tenant)
        finally:
            assert http.delete(f"/api/v1/workspaces/{ws_id}?force=true").status_code == 200
    assert workers <= _alive_children(served.proc.pid)  # no worker died on the way


def _mcp_both_generations(served: ServeProcess, tenant: Any, token: Any, ws_id: str) -> None:
    url = f"{served.base_url}/mcp/{tenant.slug}/"

    async def one(mode: str, n: int) -> tuple[Any, Any]:
        async with http_client(url, token.raw, mode=mode) as client:
            run = await client.call_tool(
                "exec_run", {"container_id": ws_id, "cmd": ["echo", f"mcp {n}"], "queue": True}
            )
            failed = await client.call_tool("fs_read", {"container_id": ws_id, "path": "/etc"})
            return run, failed

    results: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def scenario() -> None:
        # Fresh connections in parallel, so both workers' loops start a session manager.
        async def record(mode: str, n: int) -> None:
            results[mode, n] = await one(mode, n)

        async with anyio.create_task_group() as group:
            for mode in MODES:
                for n in range(4):
                    group.start_soon(record, mode, n)

    anyio.run(scenario)
    assert len(results) == 2 * 4
    for (_mode, n), (run, failed) in results.items():
        assert ok(run)["stdout"] == f"mcp {n}\n"
        assert error_code(failed) == "path_outside_workspace"


def _websocket_stream(served: ServeProcess, http: httpx.Client, token: Any, ws_id: str) -> None:
    started = http.post(
        f"/api/v1/workspaces/{ws_id}/execs",
        json={"cmd": ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done; exit 3"]},
    )
    assert started.status_code == 202, started.text
    exec_id = started.json()["exec_id"]
    ws_url = f"ws://127.0.0.1:{served.port}/ws/execs/{exec_id}/"
    messages = []
    with connect(
        ws_url, additional_headers={"Authorization": f"Bearer {token.raw}"}, open_timeout=30
    ) as ws:
        # The client offers permessage-deflate; the server declines unless configured to.
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                messages.append(json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic()))))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1000
    output = "".join(m["data"] for m in messages if m["type"] == "output")
    assert output == "line 1\nline 2\nline 3\n"
    assert (messages[-1]["type"], messages[-1]["exit_code"]) == ("complete", 3)


def _raw_uploads(http: httpx.Client, ws_id: str, tenant: Any) -> None:
    """A raw body with a Content-Length is sent on from the server's copy (hashed on
    the way); a chunked one is spooled first. Both store the same bytes and ETag."""
    from tenants.models import TenantPolicy

    data = os.urandom(3 * 1024 * 1024 + 17)
    url = f"/api/v1/workspaces/{ws_id}/files"
    raw = {"Content-Type": "application/octet-stream"}
    digest = hashlib.sha256(data).hexdigest()

    def chunks() -> Any:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    for name, body in (("sized", data), ("chunked", chunks())):
        put = http.put(url, params={"path": f"/workspace/{name}.bin"}, content=body, headers=raw)
        assert put.status_code == 200, put.text
        assert (put.json()["etag"], put.json()["size"]) == (digest, len(data))
        assert put.headers["ETag"] == f'"{digest}"'
        got = http.get(url, params={"path": f"/workspace/{name}.bin", "encoding": "raw"})
        assert got.content == data
    TenantPolicy.objects.filter(tenant=tenant).update(max_file_size_bytes=len(data) - 1)
    try:
        for body in (data, chunks()):
            refused = http.put(
                url, params={"path": "/workspace/sized.bin"}, content=body, headers=raw
            )
            assert refused.status_code == 413, refused.text
            assert refused.json()["code"] == "file_too_large"
    finally:
        TenantPolicy.objects.filter(tenant=tenant).update(max_file_size_bytes=128 * 1024 * 1024)
    got = http.get(url, params={"path": "/workspace/sized.bin", "encoding": "raw"})
    assert got.content == data  # a refused write left the file as it was


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def test_workers_stop_with_their_master_even_with_requests_in_flight(db: Any) -> None:
    """A master killed outright cannot stop its workers: each stops on its own, within
    its graceful timeout, though a request it is serving never completes."""
    from django.db import connection

    server = ServeProcess(
        str(connection.settings_dict["NAME"]),
        extra_env={"GUNICORN_CMD_ARGS": "--graceful-timeout 2"},
    )
    holders: list[socket.socket] = []
    try:
        workers = server.worker_pids()
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
        for _ in range(6):  # requests whose bodies never finish arriving, on both workers
            holder = socket.create_connection(("127.0.0.1", server.port))
            holder.sendall(
                b"POST /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc"
            )
            holders.append(holder)
        server.proc.kill()
        server.proc.wait()
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(pid) for pid in workers), server.log_tail(3000)
    finally:
        for holder in holders:
            holder.close()
        server.stop()


def test_worker_count_defaults_to_the_usable_cores() -> None:
    from devbench_site import server

    assert server.default_workers() == max(2, len(os.sched_getaffinity(0)))


def test_websocket_compression_is_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from devbench_site import server

    for raw, expected in (("", False), ("false", False), ("0", False), ("TRUE", True)):
        monkeypatch.setenv("DEVBENCH_WS_DEFLATE", raw)
        assert server._env_flag("DEVBENCH_WS_DEFLATE") is expected
    monkeypatch.setenv("DEVBENCH_WS_DEFLATE", "sometimes")
    with pytest.raises(SystemExit, match="DEVBENCH_WS_DEFLATE must be true or false"):
        server._env_flag("DEVBENCH_WS_DEFLATE")


def _streamed_download(http: httpx.Client, ws_id: str) -> None:
    """A streamed answer (raw file read) crosses the request handler whole."""
    made = http.post(
        f"/api/v1/workspaces/{ws_id}/execs",
        json={
            "cmd": [
                "sh",
                "-c",
                "head -c 3145728 /dev/urandom > /workspace/big && sha256sum /workspace/big",
            ],
            "wait": True,
        },
    )
    assert made.status_code == 200, made.text
    expected = made.json()["stdout"].split()[0]
    digest = hashlib.sha256()
    size = 0
    with http.stream(
        "GET",
        f"/api/v1/workspaces/{ws_id}/files",
        params={"path": "/workspace/big", "encoding": "raw"},
    ) as answer:
        assert answer.status_code == 200
        for chunk in answer.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (3 * 1024 * 1024, expected)
    _download_under_a_remembered_etag(http, ws_id)


def _sh(http: httpx.Client, ws_id: str, script: str) -> str:
    made = http.post(
        f"/api/v1/workspaces/{ws_id}/execs", json={"cmd": ["sh", "-c", script], "wait": True}
    )
    assert made.status_code == 200 and made.json()["exit_code"] == 0, made.text
    return str(made.json()["stdout"])


def _download_under_a_remembered_etag(http: httpx.Client, ws_id: str) -> None:
    """Once its ETag is remembered, a settled file streams as it is read; content changed
    under that ETag (same size and mtime) cuts the download short, never sending wrong
    bytes under it, and the next download, by either worker, has the new ETag."""
    old = "touch -d @1700000000 /workspace/settled"
    _sh(http, ws_id, f"head -c 2097152 /dev/urandom > /workspace/settled && {old}")
    url, params = f"/api/v1/workspaces/{ws_id}/files", {"path": "/workspace/settled"}
    etag = http.get(f"{url}/stat", params=params).json()["etag"]  # read, and remembered
    for _ in range(4):  # either worker, from the shared cache
        answer = http.get(url, params={**params, "encoding": "raw"})
        assert answer.headers["etag"] == f'"{etag}"'
        assert hashlib.sha256(answer.content).hexdigest() == etag
    _sh(http, ws_id, f"head -c 2097152 /dev/urandom > /workspace/settled && {old}")
    with pytest.raises(httpx.RemoteProtocolError):  # shorter than its Content-Length
        http.get(url, params={**params, "encoding": "raw"})
    changed = _sh(http, ws_id, "sha256sum /workspace/settled").split()[0]
    for _ in range(4):
        answer = http.get(url, params={**params, "encoding": "raw"})
        assert answer.headers["etag"] == f'"{changed}"'
        assert hashlib.sha256(answer.content).hexdigest() == changed
