"""SIGTERM to a web process mid-request: the request finishes, then the process exits."""

from __future__ import annotations

import signal
import threading
from typing import Any

import httpx
import pytest

from execution.models import Exec
from tests.integration.test_observability import Uvicorn
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.docker]


def test_in_flight_request_completes_on_sigterm(
    running_workspace: Any, token: Any, django_db_blocker: Any
) -> None:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    server = Uvicorn(db_name, {}, workers=1)
    answer: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        started.set()
        answer["response"] = httpx.post(
            f"http://127.0.0.1:{server.port}/api/v1/workspaces/{running_workspace.public_id}/execs",
            json={"cmd": ["sh", "-c", "sleep 3; echo finished"], "wait": True},
            headers={"Authorization": f"Bearer {token.raw}"},
            timeout=120,
        )

    try:
        client = threading.Thread(target=run)
        client.start()
        started.wait()
        # Stop the server once the exec runs, i.e. while the request is in flight.
        with django_db_blocker.unblock():
            wait_for(
                lambda: Exec.objects.filter(workspace=running_workspace, status="running").exists(),
                what="the exec to run",
            )
        server.proc.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        response = answer["response"]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["exit_code"] == 0 and body["stdout"] == "finished\n"
        # It then exits by itself (uvicorn re-raises the SIGTERM once it has drained).
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        # After the drain, no new connection is accepted.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    finally:
        server.stop()
