"""A large raw file write through scripts/serve is read by its view while it arrives
(core/streamed_body.py), with the guarantees of a stored body: an answer that needs
no body comes at once, and a body that never completes leaves the file as it was and
no temp file behind, with a clear error where somebody still listens.

The client here is a plain socket, so a test can stop sending halfway."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.processes import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.docker]

MiB = 1024 * 1024
STALL_S = 2


@pytest.fixture
def served(live_worker: Any) -> Iterator[ServeProcess]:
    from django.db import connection

    server = ServeProcess(
        str(connection.settings_dict["NAME"]), extra_env={"DEVBENCH_UPLOAD_STALL_S": str(STALL_S)}
    )
    yield server
    server.stop()


@pytest.fixture
def workspace(served: ServeProcess, token: Any) -> Iterator[tuple[httpx.Client, str]]:
    headers = {"Authorization": f"Bearer {token.raw}"}
    with httpx.Client(base_url=served.base_url, headers=headers, timeout=120) as http:
        spawned = http.post("/api/v1/workspaces", json={"image": "devbench/busybox:latest"})
        assert spawned.status_code == 201, spawned.text
        ws_id = spawned.json()["id"]
        try:
            yield http, ws_id
        finally:
            http.delete(f"/api/v1/workspaces/{ws_id}?force=true")


def _start_put(served: ServeProcess, token: Any, url: str, length: int, **headers: str) -> Any:
    """A socket that has sent a PUT's head declaring ``length`` body bytes."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    head = [
        f"PUT {url} HTTP/1.1",
        f"Host: 127.0.0.1:{served.port}",
        f"Authorization: Bearer {token.raw}",
        "Content-Type: application/octet-stream",
        f"Content-Length: {length}",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def _answer(sock: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one answer on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body)


def _files(http: httpx.Client, ws_id: str) -> list[str]:
    listing = http.get(f"/api/v1/workspaces/{ws_id}/files/list", params={"path": "/workspace"})
    assert listing.status_code == 200, listing.text
    return sorted(item["name"] for item in listing.json()["items"])


def _old_file(http: httpx.Client, ws_id: str, path: str) -> tuple[str, bytes, list[str]]:
    """Writes a small file at ``path``: the files URL, its content, the directory's names."""
    url = f"/api/v1/workspaces/{ws_id}/files"
    old = f"the old content of {path}\n".encode()
    assert http.put(url, params={"path": path}, content=old).status_code == 200
    return url, old, _files(http, ws_id)


def _no_temp_file_left(http: httpx.Client, ws_id: str) -> list[str]:
    """The directory's names once no temp file of a write is left (waits up to 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        names = _files(http, ws_id)
        if not any(name.startswith(".devbench-") for name in names):
            return names
        assert time.monotonic() < deadline, f"a temp file stayed behind: {names}"
        time.sleep(0.2)


def test_a_large_write_is_byte_exact_and_answered_before_its_body_when_refused(
    served: ServeProcess, workspace: tuple[httpx.Client, str], token: Any
) -> None:
    http, ws_id = workspace
    url = f"/api/v1/workspaces/{ws_id}/files"
    data = os.urandom(24 * MiB + 5)
    put = http.put(
        url,
        params={"path": "/workspace/big.bin"},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200, put.text
    assert (put.json()["etag"], put.json()["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    got = http.get(url, params={"path": "/workspace/big.bin", "encoding": "raw"})
    assert got.content == data

    # A precondition that fails needs no body: the answer comes while 60 MiB are unsent.
    sock = _start_put(
        served, token, f"{url}?path=/workspace/big.bin", 64 * MiB, If_Match='"' + "0" * 64 + '"'
    )
    try:
        sock.sendall(b"y" * MiB)
        status, body = _answer(sock)
    finally:
        sock.close()
    assert (status, body["code"]) == (412, "precondition_failed"), body
    assert http.get(url, params={"path": "/workspace/big.bin", "encoding": "raw"}).content == data


def test_a_client_gone_mid_body_leaves_the_file_as_it_was(
    served: ServeProcess, workspace: tuple[httpx.Client, str], token: Any
) -> None:
    from tenants.models import AuditEvent

    http, ws_id = workspace
    url, old, before = _old_file(http, ws_id, "/workspace/kept.txt")
    sock = _start_put(served, token, f"{url}?path=/workspace/kept.txt", 32 * MiB)
    sock.sendall(os.urandom(5 * MiB))  # past the pump's buffer: the put to the engine began
    time.sleep(0.5)
    sock.close()

    deadline = time.monotonic() + 10
    while not (
        event := AuditEvent.objects.filter(action="fs.write", target_id=ws_id, outcome="error")
        .order_by("-id")
        .first()
    ):
        assert time.monotonic() < deadline, "the broken write was never audited"
        time.sleep(0.1)
    assert event.error_code == "request_body_incomplete"
    assert http.get(url, params={"path": "/workspace/kept.txt", "encoding": "raw"}).content == old
    assert _no_temp_file_left(http, ws_id) == before


def test_a_stalled_body_is_answered_with_a_clear_error(
    served: ServeProcess, workspace: tuple[httpx.Client, str], token: Any
) -> None:
    http, ws_id = workspace
    url, old, before = _old_file(http, ws_id, "/workspace/stalled.txt")
    sock = _start_put(served, token, f"{url}?path=/workspace/stalled.txt", 16 * MiB)
    try:
        sock.sendall(os.urandom(2 * MiB))
        started = time.monotonic()
        status, body = _answer(sock)  # nothing more is sent
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert (status, body["code"]) == (400, "request_body_incomplete"), body
    assert f"{STALL_S} s" in body["message"]
    assert STALL_S - 0.5 <= waited < STALL_S + 20
    got = http.get(url, params={"path": "/workspace/stalled.txt", "encoding": "raw"})
    assert got.content == old
    assert _no_temp_file_left(http, ws_id) == before
