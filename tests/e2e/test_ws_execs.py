"""Websockets against a live daphne server, driven by the `websockets` client library."""

import json
import time

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from execution.models import ExecChunk
from execution.services import exec_start
from tests.execution.helpers import container_run, leftovers
from tests.factories import ExecFactory, MembershipFactory, UserFactory, WorkspaceFactory
from tests.isolation import assert_like_missing, websocket_answer
from tests.processes import DaphneServer, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = DaphneServer(db_name)
    yield daphne
    daphne.stop()


def _open(server, path, *, token=None, headers=None):
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token.raw}"
    return connect(server.ws_url(path), additional_headers=all_headers, open_timeout=10)


def _receive_all(ws, *, timeout_s=30):
    """Every message until the server closes; returns (messages, close code)."""
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            raw = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            messages.append(json.loads(raw))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


def _received(server, path, **kw):
    with _open(server, path, **kw) as ws:
        return _receive_all(ws, timeout_s=10)


def _close_code(server, path, **kw):
    return _received(server, path, **kw)[1]


def test_backlog_then_live_then_complete_and_exact_resume(server, running_workspace, actor, token):
    exec_ = exec_start(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "echo a; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo b; exit 4"],
    )
    wait_for(lambda: ExecChunk.objects.filter(exec=exec_).exists(), what="the first chunk")
    with _open(server, f"/ws/execs/{exec_.public_id}/", token=token) as ws:
        first = json.loads(ws.recv(timeout=10))  # the backlog
        assert first == {
            "type": "output",
            "seq": 1,
            "stream": "stdout",
            "data": "a\n",
            "encoding": "utf-8",
        }
        container_run(running_workspace, "touch", "/tmp/go")
        rest, code = _receive_all(ws)
    assert [(m["seq"], m["data"]) for m in rest[:-1]] == [(2, "b\n")]  # then live
    final = rest[-1]
    assert (final["type"], final["status"], final["exit_code"]) == ("complete", "completed", 4)
    assert final["last_seq"] == 2
    assert code == 1000

    with _open(server, f"/ws/execs/{exec_.public_id}/?after_seq=1", token=token) as ws:
        resumed, code = _receive_all(ws)
    assert [m.get("seq") for m in resumed] == [2, None]  # exactly what came after seq 1
    assert resumed[-1]["type"] == "complete" and code == 1000


def test_a_large_stream_arrives_byte_exact_without_gaps(server, running_workspace, actor, token):
    n = 200_000
    exec_ = exec_start(
        actor=actor, workspace=running_workspace, cmd=["sh", "-c", f"seq 1 {n}; seq 1 {n} >&2"]
    )
    with _open(server, f"/ws/execs/{exec_.public_id}/", token=token) as ws:
        messages, code = _receive_all(ws, timeout_s=60)
    outputs = [m for m in messages if m["type"] == "output"]
    assert [m["seq"] for m in outputs] == list(range(1, len(outputs) + 1))
    expected = "".join(f"{i}\n" for i in range(1, n + 1))
    assert "".join(m["data"] for m in outputs if m["stream"] == "stdout") == expected
    assert "".join(m["data"] for m in outputs if m["stream"] == "stderr") == expected
    assert messages[-1]["type"] == "complete" and code == 1000


def test_cancel_from_the_websocket(server, running_workspace, actor, token):
    exec_ = exec_start(actor=actor, workspace=running_workspace, cmd=["sleep", "6001"])
    wait_for(lambda: leftovers(running_workspace, "sleep 6001"), what="the exec to run")
    with _open(server, f"/ws/execs/{exec_.public_id}/", token=token) as ws:
        ws.send(json.dumps({"type": "cancel"}))
        messages, code = _receive_all(ws)
    assert messages[-1]["status"] == "cancelled" and code == 1000
    assert leftovers(running_workspace, "sleep 6001") == []


@pytest.mark.django_db(transaction=True)
def test_authentication_ways_and_tenant_isolation(server, tenant, other_tenant, make_token):
    workspace = WorkspaceFactory(tenant=tenant, container_id="x")
    exec_ = ExecFactory(workspace=workspace, status="completed", exit_code=0)
    path = f"/ws/execs/{exec_.public_id}/"
    mine, theirs = make_token(tenant), make_token(other_tenant)

    # token in the query string (browsers cannot set headers on websockets)
    with connect(server.ws_url(f"{path}?token={mine.raw}")) as ws:
        messages, code = _receive_all(ws)
    assert messages[-1]["type"] == "complete" and code == 1000

    # the browser session of a member (browsers always send Origin)
    member = UserFactory()
    MembershipFactory(user=member, tenant=tenant)
    browser = Client()
    browser.force_login(member)
    own_origin = {"Origin": f"http://{server.host}"}
    with _open(server, path, headers={**_session_cookie(browser), **own_origin}) as ws:
        assert _receive_all(ws)[0][-1]["type"] == "complete"
    # a cookie from another site's page, or a cookie without any Origin: refused at handshake
    for origin in ({"Origin": "https://evil.example"}, {}):
        with pytest.raises(InvalidStatus) as refused:
            _open(server, path, headers={**_session_cookie(browser), **origin})
        assert refused.value.response.status_code == 403

    outsider = UserFactory()
    MembershipFactory(user=outsider, tenant=other_tenant)
    browser.force_login(outsider)
    assert _close_code(server, path, headers={**_session_cookie(browser), **own_origin}) == 4404

    # Another tenant's exec: exactly as if it were missing.
    missing_id = "ex_0000000000000000"
    foreign = websocket_answer(*_received(server, path, token=theirs))
    missing = websocket_answer(*_received(server, f"/ws/execs/{missing_id}/", token=theirs))
    assert foreign.status == 4404
    assert_like_missing(
        foreign, missing, theirs_id=exec_.public_id, missing_id=missing_id, code="exec_not_found"
    )
    assert _close_code(server, f"/ws/execs/{missing_id}/", token=mine) == 4404
    assert _close_code(server, path, headers=own_origin) == 4401  # no credentials
    assert _close_code(server, f"{path}?token=dbt_not_a_token") == 4401
    assert _close_code(server, f"{path}?after_seq=x", token=mine) == 4400


def test_shell_runs_commands_resizes_and_reports_its_exit(server, running_workspace, token):
    path = f"/ws/workspaces/{running_workspace.public_id}/shell?rows=30&cols=90"
    with _open(server, path, token=token) as ws:
        ws.send(b"stty size; echo hel''lo-$((1+2))\n")
        seen = _read_until(ws, "hello-3")
        assert "30 90" in seen
        ws.send(json.dumps({"type": "resize", "rows": 40, "cols": 100}))
        ws.send(json.dumps({"type": "stdin", "data": "stty size\n"}))
        assert "40 100" in _read_until(ws, "40 100")
        ws.send(b"exit 3\n")
        frames, code = _read_to_close(ws)
    assert {"type": "exit", "exit_code": 3} in frames and code == 1000


def test_closing_the_shell_kills_what_it_started(server, running_workspace, token):
    path = f"/ws/workspaces/{running_workspace.public_id}/shell"
    with _open(server, path, token=token) as ws:
        ws.send(b"sleep 7001 & sleep 7002\n")
        wait_for(lambda: len(leftovers(running_workspace, "sleep 700")) == 2, what="sleeps")
    wait_for(lambda: leftovers(running_workspace, "sleep 700") == [], what="the shell to die")


@pytest.mark.django_db(transaction=True)
def test_shell_needs_write_scope_and_own_tenant(server, tenant, other_tenant, make_token):
    workspace = WorkspaceFactory(tenant=tenant, container_id="x")
    path = f"/ws/workspaces/{workspace.public_id}/shell"
    assert _close_code(server, path, token=make_token(tenant, scopes=("read",))) == 4403
    assert _close_code(server, path, token=make_token(other_tenant)) == 4404
    stopped = WorkspaceFactory(tenant=tenant, status="stopped", container_id="x")
    code = _close_code(
        server, f"/ws/workspaces/{stopped.public_id}/shell", token=make_token(tenant)
    )
    assert code == 4409


def _session_cookie(browser):
    name = settings.SESSION_COOKIE_NAME
    return {"Cookie": f"{name}={browser.cookies[name].value}"}


def _read_until(ws, needle, timeout_s=20):
    seen = ""
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        seen += frame.decode(errors="replace") if isinstance(frame, bytes) else frame
    return seen


def _read_to_close(ws, timeout_s=20):
    frames = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(frame, str):
                frames.append(json.loads(frame))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None
