"""Metrics and request ids across real processes: a web server, Celery workers, the engine.

* A spawn through a live web process moves the worker's spawn counter and latency
  histogram; one refused by policy moves the web process's counter with its code;
  one whose engine work fails moves a worker's ``failed`` outcome and engine errors.
* The request id of that spawn is in the web log, the worker log and its audit event.
* Under a multi-process server with PROMETHEUS_MULTIPROC_DIR, one scrape sums what
  every process counted.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenants.models import AuditEvent
from tests.conftest import WorkerProcess
from tests.processes import DaphneServer, ManagedProcess, free_port, service_env, wait_for
from workspaces.models import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.docker]

BUSYBOX = "devbench/busybox:latest"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer by (name, sorted labels)."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text[:500]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, lbls), v in samples.items()
        if n == name and all(dict(lbls).get(k) == want for k, want in labels.items())
    )


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@pytest.fixture
def web(start_daphne: Callable[..., DaphneServer]) -> DaphneServer:
    return start_daphne("observability")


def test_spawn_moves_metrics_and_its_request_id_is_everywhere(
    live_worker: WorkerProcess, web: DaphneServer, token: Any, tenant: Any
) -> None:
    worker, worker_metrics = live_worker, live_worker.metrics_url
    before = scrape(worker_metrics)
    request_id = f"spawn-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {token.raw}", "X-Request-ID": request_id}
    response = httpx.post(
        f"{web.base_url}/api/v1/workspaces", json={"image": BUSYBOX}, headers=headers, timeout=120
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    workspace_id = response.json()["id"]
    try:
        after = scrape(worker_metrics)
        success = {"outcome": "success", "warm": "false"}
        assert value(after, "devbench_workspace_spawns_total", **success) == (
            value(before, "devbench_workspace_spawns_total", **success) + 1
        )
        assert value(after, "devbench_workspace_spawn_seconds_count") == (
            value(before, "devbench_workspace_spawn_seconds_count") + 1
        )
        assert value(after, "devbench_engine_up") == 1

        # The same request id in the web log, the worker log and the audit event.
        web_lines = [e for e in json_lines(web.log_path) if e.get("request_id") == request_id]
        assert any(e.get("logger") == "devbench.request" and e["status"] == 201 for e in web_lines)
        worker_lines = wait_for(
            lambda: [
                e
                for e in json_lines(worker.log_path)
                if e.get("request_id") == request_id and workspace_id in e.get("event", "")
            ],
            what="the worker's log line",
        )
        assert worker_lines[0]["task"] == "workspaces.provision"
        event = AuditEvent.objects.get(action="workspace.spawn", target_id=workspace_id)
        assert event.request_id == request_id
    finally:
        httpx.delete(
            f"{web.base_url}/api/v1/workspaces/{workspace_id}?force=true",
            headers=headers,
            timeout=120,
        )

    # A spawn the policy refuses is counted by the web process, with its code, and its
    # error body carries the request id.
    web_before = scrape(f"{web.base_url}/metrics")
    refused = httpx.post(
        f"{web.base_url}/api/v1/workspaces",
        json={"image": "elsewhere/forbidden:1"},
        headers={"Authorization": f"Bearer {token.raw}"},
        timeout=60,
    )
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["request_id"] == refused.headers["X-Request-ID"]
    web_after = scrape(f"{web.base_url}/metrics")
    rejected = {"outcome": "rejected", "code": body["code"]}
    assert value(web_after, "devbench_workspace_spawns_total", **rejected) == (
        value(web_before, "devbench_workspace_spawns_total", **rejected) + 1
    )


def test_failed_spawn_is_counted_by_its_worker(
    live_worker: WorkerProcess,
    start_worker: Callable[..., WorkerProcess],
    actor: Any,
    settings: Any,
) -> None:
    """A node whose engine refuses the container: outcome ``failed`` and an engine error."""
    from workspaces.services import workspace_spawn

    broken = start_worker(
        "broken",
        {
            "DEVBENCH_NODE": "ops-broken",
            "DEVBENCH_NODE_LABELS": "engine=ops-broken",  # placed there, not on local
            "DEVBENCH_CONTAINER_RUNTIME": "no-such-runtime",
        },
    )
    url = broken.metrics_url
    before = scrape(url)
    workspace = workspace_spawn(
        actor=actor, image=BUSYBOX, wait=False, node_labels={"engine": "ops-broken"}
    )
    assert workspace.node == "ops-broken"
    wait_for(lambda: Workspace.objects.get(pk=workspace.pk).status != "creating", what="the spawn")
    workspace.refresh_from_db()
    assert workspace.status == "error", workspace.status_message
    after = scrape(url)
    failed = {"outcome": "failed", "code": workspace.error_code}
    assert value(after, "devbench_workspace_spawns_total", **failed) == (
        value(before, "devbench_workspace_spawns_total", **failed) + 1
    )
    assert value(after, "devbench_workspace_spawns_total", outcome="success") == value(
        before, "devbench_workspace_spawns_total", outcome="success"
    )
    assert value(after, "devbench_engine_errors_total", kind=workspace.error_code) >= 1


class Uvicorn(ManagedProcess):
    """The ASGI app under uvicorn with several worker processes."""

    what = "uvicorn"

    def __init__(self, db_name: str, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port",
                str(self.port), "--workers", str(workers), "--lifespan", "off",
                "devbench_site.asgi:application"]  # fmt: skip
        super().__init__(argv, env={**service_env(db_name), **env}, log_name="uvicorn-metrics")

    def is_ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).is_success
        except httpx.HTTPError:
            return False


def test_multiprocess_web_server_sums_every_process(
    transactional_db: Any, django_db_blocker: Any, tmp_path: Path
) -> None:
    from django.db import connection

    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    server = Uvicorn(db_name, {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, workers=3)
    try:
        base = f"http://127.0.0.1:{server.port}"
        codes = set()
        for _ in range(30):  # a new connection each time: spread over the processes
            r = httpx.get(
                f"{base}/api/v1/me",
                headers={"Authorization": "Bearer not-a-token", "Connection": "close"},
                timeout=30,
            )
            assert r.status_code == 401
            codes.add(r.json()["code"])
        (code,) = codes
        files = {p.name for p in multiproc.glob("counter_*.db")}
        assert len(files) >= 2, files  # several processes counted
        for _ in range(3):  # whichever process answers the scrape reports the same sum
            samples = scrape(f"{base}/metrics")
            assert value(samples, "devbench_auth_failures_total", code=code) == 30
        assert value(samples, "devbench_database_up") == 1
    finally:
        server.stop()
