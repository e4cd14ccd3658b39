"""Exec benchmark: DevBench against raw docker-py doing the same work, in one run.

    BENCH_DATABASE_URL=postgres://devbench:devbench@127.0.0.1:5432/devbench_bench \\
    BENCH_REDIS_URL=redis://127.0.0.1:6379/5 \\
    .venv/bin/python bench/bench_exec.py [--rounds 30] [--stream-rounds 5] [--stream-mib 8]

Give it a Redis database nobody else uses at the same time: a Celery worker of
another run on the same queues would take its tasks.

Needs PostgreSQL (the database is created and migrated if missing), Redis and
the Docker engine with devbench/busybox built. It starts its own Celery
worker and daphne server, spawns one busybox workspace, and prints p50/p95
for:
* the round trip of `true` and `echo hi`: REST ``POST .../execs`` with
  ``wait: true`` (exec row, Celery task, docker exec, stored output, answer)
  against docker-py ``exec_create`` + ``exec_start`` + ``exec_inspect``;
* a command writing N MiB: run with ``wait: true`` (stored, then returned in
  the answer), and streamed to a websocket client from POST to "complete",
  each against reading the raw docker exec stream; also as MiB/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Timer, print_ratios, summarize  # noqa: E402

INSTANCE = f"bench-{uuid.uuid4().hex[:8]}"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://devbench:devbench@127.0.0.1:5432/devbench_bench"
    )
    env["REDIS_URL"] = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
    )
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(60))
    # Load generators are one token: keep the limiter's cost (counted in Redis on every
    # request) but not its 429s, which would measure refusals instead of reads.
    env.setdefault("DEVBENCH_RATE_LIMIT_PER_TOKEN", "100000000/minute")
    env.setdefault("DEVBENCH_RATE_LIMIT_PER_TENANT", "100000000/minute")
    env.update(
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
        DEVBENCH_INSTANCE=INSTANCE,
        DJANGO_SETTINGS_MODULE="devbench_site.settings",
        LOG_LEVEL="WARNING",
    )
    return env


ENV = _environment()
os.environ.update(ENV)


# --- processes --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(cmd: list[str], ready: Callable[[], bool], name: str) -> subprocess.Popen[bytes]:
    log = (ROOT / "var" / f"{name}-{INSTANCE}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start; see {log.name}")
        time.sleep(0.1)
    return proc


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the benchmark's database if missing; ``fresh``: drop it first, whatever
    is connected to it (it is the benchmark's own)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    if fresh and not name.startswith("devbench_bench"):
        raise SystemExit(
            f"BENCH_DATABASE_URL names {name!r}: every run drops and creates its database, "
            "so it must be one of the benchmark's own (a name starting devbench_bench)."
        )
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- the benchmark ----------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stream-rounds", type=int, default=5)
    parser.add_argument("--stream-mib", type=int, default=8)
    args = parser.parse_args()

    (ROOT / "var").mkdir(exist_ok=True)
    _ensure_database(ENV["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from tenants.models import TenantPolicy
    from tenants.principal import system_principal
    from tenants.services import api_token_create, tenant_create, user_get_or_create
    from workspaces.services import workspace_kill, workspace_spawn

    tenant = tenant_create(slug=INSTANCE)
    TenantPolicy.objects.filter(tenant=tenant).update(
        exec_output_cap_bytes=(args.stream_mib + 8) * 1024 * 1024, max_concurrent_execs=8
    )
    user = user_get_or_create(email=f"{INSTANCE}@bench.invalid")
    from tenants.services import membership_set

    operator = system_principal(tenant)
    membership_set(actor=operator, user=user, role="member")
    _, token = api_token_create(actor=operator, user=user, name="bench")

    queues = "default,node." + os.environ.get("DEVBENCH_NODE", "local")
    worker_log = ROOT / "var" / f"celery-{INSTANCE}.log"
    worker = _start(
        [sys.executable, "-m", "celery", "-A", "devbench_site", "worker", "-P", "threads",
         "-c", "16", "-Q", queues, "-n", f"bench@{INSTANCE}", "--without-mingle",
         "--without-gossip", "--loglevel=INFO"],
        lambda: worker_log.exists() and "ready." in worker_log.read_text(errors="replace"),
        "celery",
    )  # fmt: skip
    port = _free_port()
    daphne = _start(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "devbench_site.asgi:application"],
        lambda: _port_open(port),
        "daphne",
    )  # fmt: skip
    actor = system_principal(tenant)
    workspace = None
    try:
        workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
        clients = _Clients(
            port=port,
            token=token,
            container=workspace.container_id,
            execs_url=f"/api/v1/workspaces/{workspace.public_id}/execs",
        )
        ours, raw_docker = Timer(), Timer()

        def measure(
            name: str, fn_ours: Callable[[], object], fn_raw: Callable[[], object], n: int
        ) -> None:
            # Alternate ours and raw, so both see the same load of the shared machine.
            fn_ours(), fn_raw()  # warm up
            for _ in range(n):
                with ours(name):
                    fn_ours()
                with raw_docker(name):
                    fn_raw()

        for cmd in (["true"], ["echo", "hi"]):
            measure(f"`{' '.join(cmd)}`", clients.rest_run(cmd), clients.raw_run(cmd), args.rounds)
        size = args.stream_mib * 1024 * 1024
        stream_cmd = [
            "sh",
            "-c",
            f"yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {size}",
        ]
        stored, streamed = f"{args.stream_mib}MiB exec_run", f"{args.stream_mib}MiB to ws"
        raw_stream = clients.raw_stream(stream_cmd, size)
        measure(stored, clients.rest_run(stream_cmd), raw_stream, args.stream_rounds)
        measure(streamed, clients.ws_stream(stream_cmd, size), raw_stream, args.stream_rounds)
        _report(ours, raw_docker, ["`true`", "`echo hi`"], [stored, streamed], args.stream_mib)
    finally:
        if workspace is not None:
            workspace_kill(actor=actor, workspace=workspace, force=True)
        _stop(daphne, worker)


class _Clients:
    """Our REST API and websocket, and the raw docker-py client, on one workspace."""

    def __init__(self, *, port: int, token: str, container: str, execs_url: str) -> None:
        import docker
        import httpx

        self.port, self.token, self.container, self.execs_url = port, token, container, execs_url
        self.raw = docker.APIClient(version="auto")
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )

    def rest_run(self, cmd: list[str]) -> Callable[[], object]:
        def run() -> object:
            body = self.http.post(self.execs_url, json={"cmd": cmd, "wait": True}).json()
            assert body["status"] == "completed", body
            return body

        return run

    def raw_run(self, cmd: list[str]) -> Callable[[], object]:
        def run() -> object:
            exec_id = self.raw.exec_create(self.container, cmd, user="1000:1000")["Id"]
            output = self.raw.exec_start(exec_id)
            assert self.raw.exec_inspect(exec_id)["ExitCode"] is not None
            return output

        return run

    def ws_stream(self, cmd: list[str], size: int) -> Callable[[], object]:
        from websockets.sync.client import connect

        def run() -> object:
            exec_id = self.http.post(self.execs_url, json={"cmd": cmd}).json()["exec_id"]
            received = 0
            with connect(
                f"ws://127.0.0.1:{self.port}/ws/execs/{exec_id}/",
                additional_headers={"Authorization": f"Bearer {self.token}"},
                max_size=None,
            ) as ws:
                for frame in ws:
                    message = json.loads(frame)
                    if message["type"] == "complete":
                        break
                    if message["type"] == "output":
                        received += _decoded_size(message)
            assert received == size, (received, size)
            return received

        return run

    def raw_stream(self, cmd: list[str], size: int) -> Callable[[], object]:
        def run() -> object:
            exec_id = self.raw.exec_create(self.container, cmd, user="1000:1000")["Id"]
            received = 0
            for out, err in self.raw.exec_start(exec_id, stream=True, demux=True):
                received += len(out or b"") + len(err or b"")
            assert received == size, (received, size)
            return received

        return run


def _decoded_size(message: dict[str, str]) -> int:
    data = message["data"]
    return len(base64.b64decode(data) if message["encoding"] == "base64" else data.encode())


def _report(
    ours: Timer, raw_docker: Timer, short: list[str], streams: list[str], stream_mib: int
) -> None:
    print_ratios([(n, ours.samples[n], raw_docker.samples[n]) for n in [*short, *streams]])
    print()
    for name in streams:
        a, b = summarize(ours.samples[name]), summarize(raw_docker.samples[name])
        print(
            f"{name:<14} throughput p50: ours {stream_mib * 1000 / a.p50_ms:6.1f} MiB/s | "
            f"docker {stream_mib * 1000 / b.p50_ms:6.1f} MiB/s"
        )


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
