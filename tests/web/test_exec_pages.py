"""Commands from the workspace page with the real worker: start, output, list, cancel."""

from __future__ import annotations

import pytest

from execution.models import Exec
from execution.selectors import exec_output
from execution.services import exec_wait
from tests.execution.helpers import leftovers
from tests.processes import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_a_command_runs_through_the_shell_and_can_be_cancelled(web, tenant, running_workspace):
    base = f"/t/{tenant.slug}/workspaces/{running_workspace.public_id}/"
    started = web.post(
        base + "execs/",
        {"command": "echo hello; echo oops 1>&2; exit 3", "timeout_s": ""},
        HTTP_ACCEPT="application/json",
    )
    assert started.status_code == 202
    body = started.json()
    assert body["command"] == "echo hello; echo oops 1>&2; exit 3"
    assert body["stream_path"] == f"/ws/execs/{body['exec_id']}/"
    exec_ = Exec.objects.get(public_id=body["exec_id"])
    assert exec_.cmd == ["/bin/sh", "-c", "echo hello; echo oops 1>&2; exit 3"]
    assert exec_.created_by_id == started.wsgi_request.user.pk
    exec_wait(exec_=exec_, timeout_s=30)
    assert (exec_.status, exec_.exit_code) == ("completed", 3)
    assert exec_output(exec_pk=exec_.pk) == (b"hello\n", b"oops\n")
    rows = web.get(base + "execs/rows").content.decode()
    assert "exit 3" in rows and body["exec_id"] in rows

    # without scripts: a plain form post opens the page on the new exec
    plain = web.post(base + "execs/", {"command": "sleep 6003"})
    assert plain.status_code == 302
    long_running = Exec.objects.exclude(pk=exec_.pk).get()
    assert plain["Location"] == f"{base}?exec={long_running.public_id}"
    wait_for(lambda: leftovers(running_workspace, "sleep 6003"), what="the sleep to run")
    cancelled = web.post(
        f"/t/{tenant.slug}/execs/{long_running.public_id}/cancel", HTTP_ACCEPT="application/json"
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert leftovers(running_workspace, "sleep 6003") == []
