"""Shared fixtures.

The suite runs against PostgreSQL, Redis, the real Docker engine and a real
Celery worker (started once per session against the test database). Tests
that hand work to the worker must use ``transactional_db`` (via
``live_worker``) so the worker sees committed rows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import ApiTokenFactory, MembershipFactory, TenantFactory, UserFactory
from tests.processes import TEST_INSTANCE, ManagedProcess, service_env


def pytest_configure(config: pytest.Config) -> None:
    settings.DEVBENCH_INSTANCE = TEST_INSTANCE
    os.environ["DEVBENCH_INSTANCE"] = TEST_INSTANCE
    # Tests call services in this process against the local engine (the single-host
    # shape); tests/nodes runs web processes without one.
    settings.DEVBENCH_ENGINE_DIRECT = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _remove_test_containers()


def _remove_test_containers() -> None:
    try:
        import docker

        client = docker.from_env()
        for container in client.containers.list(
            all=True, filters={"label": f"devbench.instance={TEST_INSTANCE}"}
        ):
            container.remove(force=True, v=True)
        for volume in client.volumes.list(filters={"label": f"devbench.instance={TEST_INSTANCE}"}):
            volume.remove(force=True)
        for image in client.images.list(filters={"label": f"devbench.instance={TEST_INSTANCE}"}):
            client.images.remove(image.id, force=True)  # snapshots and templates
    except Exception as exc:  # cleanup must not mask the test result
        print(f"warning: test container cleanup failed: {exc}", file=sys.stderr)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """Each test gets its own instance of the default channel layer.

    A layer's receive state (its lock, its receiving loop, its per-channel buffers) is
    bound to the event loops that used it. Tests run one loop after another in this
    process, and a test whose loop stopped with a receive still pending would leave
    the next test's consumers a lock of a dead loop. Production runs one loop per
    process (the waits have their own instance, ``execution.notify``).
    """
    yield
    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def tenant(db: Any) -> Any:
    return TenantFactory()


@pytest.fixture
def other_tenant(db: Any) -> Any:
    return TenantFactory()


@pytest.fixture
def make_token(db: Any) -> Callable[..., Any]:
    def _make(tenant: Any = None, scopes: tuple[str, ...] = ("read", "write"), **kw: Any) -> Any:
        return ApiTokenFactory(tenant=tenant or TenantFactory(), scopes=list(scopes), **kw)

    return _make


@pytest.fixture
def token(tenant: Any, make_token: Callable[..., Any]) -> Any:
    return make_token(tenant, scopes=("read", "write"))


@pytest.fixture
def api(token: Any) -> Client:
    """A Django test client authenticated with a read+write token of ``tenant``."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")


def client_for(token: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")


@pytest.fixture
def tenant_admin(tenant: Any) -> Any:
    user = UserFactory(is_staff=True)
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return user


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess(ManagedProcess):
    """A real Celery worker (threads pool) on the default and this node's queue."""

    what = "celery worker"

    def __init__(self, db_name: str, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        # Each worker serves its metrics on a port of its own (devbench_site.metrics).
        self.metrics_port = _free_port()
        env = {
            **service_env(db_name),
            "DEVBENCH_WORKER_METRICS_PORT": str(self.metrics_port),
            **(extra_env or {}),
        }
        self.metrics_url = f"http://127.0.0.1:{env['DEVBENCH_WORKER_METRICS_PORT']}/metrics"
        queues = f"default,node.{env.get('DEVBENCH_NODE') or settings.DEVBENCH_NODE}"
        argv = [sys.executable, "-m", "celery", "-A", "devbench_site", "worker", "-P", "threads",
                "-c", "16", "-Q", queues, "-n", f"{name}@{TEST_INSTANCE}", "--without-mingle",
                "--without-gossip", "--loglevel=INFO"]  # fmt: skip
        super().__init__(argv, env=env, log_name=f"celery-{name}")

    def is_ready(self) -> bool:
        return "ready." in self.log_path.read_text(errors="replace")


def _end_other_sessions(db_name: str, *, from_maintenance_db: bool = False) -> None:
    """End every session on the database ``db_name`` but this one (PostgreSQL), asked
    through the connection to the test database or, before it exists, through the
    server's maintenance database (Django's own way in when it creates the test one)."""
    from django.db import connection

    with connection._nodb_cursor() if from_maintenance_db else connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [db_name],
        )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings: None, django_db_blocker: Any
) -> None:
    """pytest-django's, then: no session left on the test database by an earlier run (a
    process that outlived it), which would keep it from being dropped and made anew."""
    from django.db import connection

    settings_dict = connection.settings_dict
    with django_db_blocker.unblock():  # Django's name for the test database
        _end_other_sessions(
            settings_dict["TEST"]["NAME"] or f"test_{settings_dict['NAME']}",
            from_maintenance_db=True,
        )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, and before it is dropped: every other session on it
    ended. Connections that threads of this process opened (in-process servers and pools
    some tests run) stay open until the process exits, and a server process stopping a
    moment late holds its own: either made the drop fail at the end of a green run."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        _end_other_sessions(str(connection.settings_dict["NAME"]))


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: Any, django_db_blocker: Any) -> Iterator[WorkerProcess]:
    """One real Celery worker for the whole session, on the test database."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    worker = WorkerProcess(db_name, "main")
    yield worker
    worker.stop()


@pytest.fixture
def live_worker(celery_worker_process: WorkerProcess, transactional_db: Any) -> WorkerProcess:
    """Tests that hand work to the Celery worker: committed rows, a running worker."""
    return celery_worker_process


@pytest.fixture
def start_worker(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start extra, test-owned workers (e.g. to kill one mid-task)."""
    from django.db import connection

    started: list[WorkerProcess] = []
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]

    def _start(name: str, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(db_name, name, extra_env)
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()


@pytest.fixture
def actor(tenant: Any) -> Any:
    """A read+write+admin principal of ``tenant`` for calling services directly."""
    from tenants.principal import system_principal

    return system_principal(tenant)


@pytest.fixture
def running_workspace(live_worker: WorkerProcess, actor: Any) -> Iterator[Any]:
    """A live devbench/busybox workspace of ``tenant``, made through the real spawn service."""
    from workspaces.services import workspace_kill, workspace_spawn

    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
    yield workspace
    workspace.refresh_from_db()
    if workspace.status != "removed":
        workspace_kill(actor=actor, workspace=workspace, force=True)
