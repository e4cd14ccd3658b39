"""MCP tool calls vs the same operations over REST vs raw docker-py, in one run.

    .venv/bin/python bench/bench_mcp.py [--runs 20]

Starts a real web process (daphne) on a free port and talks to it as clients
do: the official MCP Python client over Streamable HTTP (one connection,
protocol 2026-07-28) and plain HTTP for REST. Embedded mode by default (SQLite
in a temporary directory, tasks on the web process's in-process pool); with
DATABASE_URL and REDIS_URL set (e.g. ``. scripts/test-env``) it also starts a
Celery worker and measures the production path. The database must exist.

Operations (each timed per call; ``spawn`` is followed by an untimed kill):

* ``fs_stat``   MCP fs_stat | REST GET .../files/stat | docker-py get_archive (stat header)
* ``exec_run``  MCP exec_run ``echo hi`` | REST POST .../execs wait=true | exec_create + start
* ``spawn``     MCP spawn | REST POST /workspaces | volume + create + start

Prints p50/p95 and ratios: MCP vs docker, REST vs docker, MCP vs REST.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _raw import RawDocker  # noqa: E402
from _timing import Timer, print_ratios  # noqa: E402
from _workers import start_celery_worker  # noqa: E402

IMAGE = "devbench/busybox:latest"
LISTENING = re.compile(rb"Listening on TCP address 127\.0\.0\.1:(\d+)")
OPS = ("fs_stat", "exec_run", "spawn")


def _setup() -> list[subprocess.Popen[bytes]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
    os.environ.setdefault("DEVBENCH_INSTANCE", f"bench-{uuid.uuid4().hex[:6]}")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    production = bool(os.environ.get("DATABASE_URL"))
    if not production:
        os.environ["DEVBENCH_VAR_DIR"] = tempfile.mkdtemp(prefix="devbench-bench-")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    processes = [_daphne()]
    if production:
        processes.append(start_celery_worker("mcp"))
    return processes


def _daphne() -> subprocess.Popen[bytes]:
    log_path = Path(tempfile.gettempdir()) / "devbench-bench-daphne.log"
    log_path.write_bytes(b"")
    # INFO: daphne announces its port in the log. No periodic jobs: they only add noise.
    env = {**os.environ, "LOG_LEVEL": "INFO", "DEVBENCH_SCHEDULER": "off"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-e",
            "tcp:port=0:interface=127.0.0.1",
            "devbench_site.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if match := LISTENING.search(log_path.read_bytes()):
            proc.port = int(match.group(1))  # type: ignore[attr-defined]
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not start: {log_path.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    processes = _setup()
    try:
        import anyio

        slug, token = _credentials()
        anyio.run(run, processes[0].port, args.runs, slug, token)  # type: ignore[attr-defined]
    finally:
        for proc in processes:
            proc.terminate()
            proc.wait(30)


def _credentials() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    from tenants.principal import operator_principal
    from tenants.services import api_token_create, tenant_create

    name = f"bench-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, f"{name}@bench.invalid")
    tenant = tenant_create(slug=name, name="Bench", owner=user)
    _, raw = api_token_create(
        actor=operator_principal(tenant, name="bench"),
        user=user,
        name="bench",
        scopes=["read", "write"],
    )
    return tenant.slug, raw


async def run(port: int, runs: int, slug: str, token: str) -> None:
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    raw = RawDocker()
    mcp_t, rest_t, raw_t = Timer(), Timer(), Timer()

    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        Client(streamable_http_client(f"{base}/mcp/{slug}/", http_client=http)) as client,
    ):

        async def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            result = await client.call_tool(name, arguments)
            if result.is_error:
                raise RuntimeError(f"{name}: {result.content}")
            return dict(result.structured_content or {})

        async def rest(method: str, path: str, **kw: Any) -> Any:
            response = await http.request(method, f"{base}/api/v1{path}", **kw)
            response.raise_for_status()
            return response.json()

        ws = (await tool("spawn", {"image": IMAGE}))["id"]
        raw_id = raw.spawn()
        await tool("fs_write", {"container_id": ws, "path": "bench.txt", "content": "x" * 1024})
        raw.api.exec_start(
            raw.api.exec_create(raw_id, ["sh", "-c", "head -c 1024 /dev/zero > bench.txt"])["Id"]
        )
        stat_path = "/workspace/bench.txt"

        async def timed(timer: Timer, name: str, record: bool, fn: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            result = await fn()
            if record:
                timer.samples.setdefault(name, []).append(time.perf_counter() - start)
            return result

        async def blocking(fn: Callable[[], Any]) -> Any:
            return fn()

        try:
            for i in range(runs + 1):  # round 0 warms connections and caches
                record = i > 0
                args = {"container_id": ws, "path": stat_path}
                await timed(mcp_t, "fs_stat", record, functools.partial(tool, "fs_stat", args))
                await timed(
                    rest_t,
                    "fs_stat",
                    record,
                    lambda: rest("GET", f"/workspaces/{ws}/files/stat", params={"path": stat_path}),
                )
                await timed(
                    raw_t, "fs_stat", record, lambda: blocking(lambda: raw.stat(raw_id, stat_path))
                )

                run_args = {"container_id": ws, "cmd": ["echo", "hi"]}
                await timed(
                    mcp_t, "exec_run", record, functools.partial(tool, "exec_run", run_args)
                )
                await timed(
                    rest_t,
                    "exec_run",
                    record,
                    lambda: rest(
                        "POST",
                        f"/workspaces/{ws}/execs",
                        json={"cmd": ["echo", "hi"], "wait": True},
                    ),
                )
                await timed(
                    raw_t, "exec_run", record, lambda: blocking(lambda: raw.exec_echo(raw_id))
                )

                made = await timed(mcp_t, "spawn", record, lambda: tool("spawn", {"image": IMAGE}))
                await tool("kill", {"container_id": made["id"], "force": True})
                made = await timed(
                    rest_t,
                    "spawn",
                    record,
                    lambda: rest("POST", "/workspaces", json={"image": IMAGE}),
                )
                await rest("DELETE", f"/workspaces/{made['id']}", params={"force": True})
                made_raw = await timed(raw_t, "spawn", record, lambda: blocking(raw.spawn))
                raw.kill(made_raw)
        finally:
            await tool("kill", {"container_id": ws, "force": True})
            raw.kill(raw_id)

    from django.conf import settings

    mode = "embedded" if settings.EMBEDDED else "production (Celery worker)"
    print(f"DevBench MCP vs REST vs raw docker-py, {runs} runs, {mode} mode, image {IMAGE}")
    print("\nMCP tool call vs docker-py")
    print_ratios([(op, mcp_t.samples[op], raw_t.samples[op]) for op in OPS])
    print("\nREST call vs docker-py")
    print_ratios([(op, rest_t.samples[op], raw_t.samples[op]) for op in OPS])
    print("\nMCP tool call vs REST call")
    print_ratios([(op, mcp_t.samples[op], rest_t.samples[op]) for op in OPS], label="rest")


if __name__ == "__main__":
    main()
