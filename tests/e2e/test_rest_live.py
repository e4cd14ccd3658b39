"""REST execs through a live daphne server (sync views, long-polls) with a real client."""

import httpx
import pytest

from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = DaphneServer(db_name)
    yield daphne
    daphne.stop()


def test_runs_and_long_polls_over_http(server, running_workspace, token):
    http = httpx.Client(
        base_url=f"http://{server.host}",
        headers={"Authorization": f"Bearer {token.raw}"},
        timeout=60,
    )
    path = f"/api/v1/workspaces/{running_workspace.public_id}/execs"
    for i in range(3):
        body = http.post(path, json={"cmd": ["echo", str(i)], "wait": True}).json()
        assert (body["status"], body["stdout"]) == ("completed", f"{i}\n")
    for _ in range(2):
        exec_id = http.post(path, json={"cmd": ["sh", "-c", "sleep 0.3; echo x"]}).json()["exec_id"]
        polled = http.get(f"/api/v1/execs/{exec_id}", params={"wait_s": 20}).json()
        assert [m["data"] for m in polled["messages"]] == ["x\n"]
