"""Every row of the performance goal table, DevBench beside the raw engine, in one run.

    bench/run [--quick] [--duration 10] [--rounds 30] [--rows reads,execs,...]
              [--profile ["GET workspaces (list)"]]

(``bench/run`` installs ``wrk`` when missing, then runs this file.) Production
mode: PostgreSQL, Redis, a Celery worker and the web server (``scripts/serve``
when the repository has it, else one daphne) are started here; the database
``devbench_bench`` is created anew (dropped first) and migrated for every run. Give it a Redis
database no other worker listens on (``BENCH_REDIS_URL``, default db 5).

Rows (ours | the raw engine doing the same work, same run, alternating):
* control reads: ``wrk`` at 1 / 4 / 16 / 50 connections on ``/healthz``,
  ``GET /workspaces/{id}``, ``GET /workspaces``, ``GET /execs/{id}`` and
  ``GET .../files/stat``; one read row again while 20 exec writers run (that row
  alone: ``--rows writers``);
* exec round trip of ``true`` / ``echo hi`` over REST and MCP | docker-py
  ``exec_create`` + ``exec_start`` + ``exec_inspect``; execs per second with
  20 in flight | docker-py 20-wide;
* files: 1 MiB and 64 MiB write and read, listing 1,000 files | ``put_archive``
  / ``get_archive`` (+ tar handling);
* streaming: 8 MiB to a websocket | reading the raw exec stream; the delay of a
  line printed mid-run (ours minus raw);
* cold spawn | volume + create + start;
* warm pool (``bench_pool.measure``, in this process against the run's worker): warm
  spawn timed server-side | volume + create + start; resume of a paused workspace +
  ``echo`` | cold spawn + ``echo``; pool refill rate;
* memory: RSS of each web process and the worker through a mixed load of
  ``--soak-minutes`` (``soak.py``: flat after the warm-up?), and before and after the run.

Prints the table and writes ``bench/results/<time>.json`` and ``.png`` (and
``latest.*``). Nothing here is a test: the machine's load moves absolute
numbers; compare ratios.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The production environment (BENCH_DATABASE_URL, BENCH_REDIS_URL) and its process
# helpers are bench_exec's; importing it sets os.environ for this run.
from _timing import percentile  # noqa: E402
from _workers import cpu_s, pids_named, process_tree, start_celery_worker  # noqa: E402
from bench_exec import (  # noqa: E402
    ENV,
    INSTANCE,
    _ensure_database,
    _free_port,
    _port_open,
)
from bench_fs import _Chunks, tar_of  # noqa: E402
from bench_mcp import RawDocker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
IMAGE = os.environ.get("BENCH_IMAGE", "devbench/busybox:latest")


# --- results ---------------------------------------------------------------------------


@dataclass
class Row:
    group: str
    name: str
    ours: str  # as printed
    raw: str = ""
    ratio: float | None = None  # ours / raw (time) or raw / ours (throughput): lower is better
    goal: str = ""
    met: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


ROWS: list[Row] = []


def add(row: Row) -> None:
    ROWS.append(row)
    mark = {True: "ok", False: "MISSED", None: ""}[row.met]
    ratio = f"x{row.ratio:.2f}" if row.ratio is not None else ""
    print(f"  {row.name:<44} {row.ours:<34} {row.raw:<28} {ratio:<7} {row.goal} {mark}", flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000


def p50(samples: list[float]) -> float:
    return percentile(samples, 50)


# --- processes -------------------------------------------------------------------------


def upload_pieces(data: bytes, piece: int = MiB) -> Iterator[memoryview]:
    """An upload's body for httpx, in pieces: given one ``bytes``, its transport sends
    it with ``buffer = buffer[sent:]`` after each partial send, copying the rest of the
    body every time (64 MiB to a bare uvicorn app: 140-150 ms, against 45-60 ms in 1 MiB
    pieces or through requests, which docker-py, the raw side, uses)."""
    view = memoryview(data)
    return (view[start : start + piece] for start in range(0, len(data), piece))


def start_web(port: int, server: str) -> tuple[subprocess.Popen[bytes], str]:
    """scripts/serve (every core) when the repository has it, else one daphne."""
    serve = ROOT / "scripts" / "serve"
    env = dict(ENV, DEVBENCH_HOST="127.0.0.1", DEVBENCH_PORT=str(port))
    if serve.exists() and server != "daphne":
        cmd, label = [str(serve)], "scripts/serve"
    else:
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
               "devbench_site.asgi:application"]  # fmt: skip
        label = "daphne (one process)"
    log = (ROOT / "var" / f"web-{INSTANCE}.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 90
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start; see {log.name}")
        time.sleep(0.1)
    return proc, label


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total = 0
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError):
            continue
    return total / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 15)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        # The whole group: killing only gunicorn's master would leave its workers behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, 9)
        proc.kill()


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _wrk_ms(text: str, pct: str) -> float:
    match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, token: str, connections: int, duration_s: int) -> Load:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency",
         "--timeout", "10s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*timeout (\d+)"):
        found = re.search(pattern, out)
        errors += int(found.group(1)) if found else 0
    return Load(rps=rps, p50_ms=_wrk_ms(out, "50"), p99_ms=_wrk_ms(out, "99"), errors=errors)


# --- the run -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import django

        self.args = args
        (ROOT / "var").mkdir(exist_ok=True)
        # An empty database for every run, as on a new machine: no run inherits the
        # output earlier runs stored (3.4 GB after a day of runs).
        _ensure_database(ENV["DATABASE_URL"], fresh=True)
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        import docker
        import httpx

        from tenants.models import TenantPolicy
        from tenants.principal import operator_principal
        from tenants.services import (
            api_token_create,
            membership_set,
            tenant_create,
            user_get_or_create,
        )

        self.tenant = tenant_create(slug=INSTANCE)
        TenantPolicy.objects.filter(tenant=self.tenant).update(
            exec_output_cap_bytes=64 * MiB,
            max_concurrent_execs=32,
            max_workspaces=100,
            max_file_size_bytes=128 * MiB,
        )
        user = user_get_or_create(email=f"{INSTANCE}@bench.invalid")
        operator = operator_principal(self.tenant, name="bench")
        membership_set(actor=operator, user=user, role="member")
        _, self.token = api_token_create(actor=operator, user=user, name="bench")
        self.worker = start_celery_worker(INSTANCE, concurrency=24)
        self.port = _free_port()
        self.web, self.web_label = start_web(self.port, args.server)
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=300
        )
        # As many pooled connections as the widest raw row has calls in flight (20): the
        # default 10 would make the raw side reconnect.
        self.raw = docker.APIClient(version="auto", max_pool_size=32)
        self.memory: dict[str, float] = {}
        self.workspaces: list[str] = []

    # --- helpers ---

    def rest(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        assert response.status_code < 300, (response.status_code, response.text[:500])
        return response.json() if response.content else None

    def spawn(self) -> dict[str, Any]:
        body = self.rest("POST", "/api/v1/workspaces", json={"image": IMAGE, "wait": True})
        self.workspaces.append(body["id"])
        return dict(body)

    def container(self, ws: dict[str, Any]) -> str:
        from workspaces.models import Workspace

        return Workspace.objects.get(public_id=ws["id"]).container_id

    def alternate(
        self, ours: Callable[[], object], raw: Callable[[], object], n: int
    ) -> tuple[list[float], list[float]]:
        ours(), raw()  # warm up
        a: list[float] = []
        b: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            ours()
            a.append(time.perf_counter() - start)
            start = time.perf_counter()
            raw()
            b.append(time.perf_counter() - start)
        return a, b

    def ratio_row(
        self, group: str, name: str, ours: list[float], raw: list[float], goal: float | None
    ) -> None:
        ratio = p50(ours) / p50(raw)
        add(
            Row(
                group=group,
                name=name,
                ours=f"p50 {ms(p50(ours)):.1f} ms, p95 {ms(percentile(ours, 95)):.1f}",
                raw=f"p50 {ms(p50(raw)):.1f} ms",
                ratio=ratio,
                goal=f"≤ x{goal:.2f}" if goal else "",
                met=None if goal is None else ratio <= goal,
                data={"ours_s": ours, "raw_s": raw},
            )
        )

    # --- rows ---

    def control_reads(
        self, ws: dict[str, Any], exec_id: str, file_path: str, deep_path: str
    ) -> None:
        print("control reads (wrk)")
        d = self.args.duration
        api = f"{self.base}/api/v1"
        urls = {
            "/healthz": f"{self.base}/healthz",
            "GET workspace": f"{api}/workspaces/{ws['id']}",
            "GET workspaces (list)": f"{api}/workspaces",
            "GET exec (poll)": f"{api}/execs/{exec_id}",
            "fs stat": f"{api}/workspaces/{ws['id']}/files/stat?path={file_path}",
            # Not a goal row: what each level below /workspace adds (the walk's stats).
            "fs stat, 5 levels deep": f"{api}/workspaces/{ws['id']}/files/stat?path={deep_path}",
        }
        levels_of = {"GET workspace": (1, 4, 16, 50), "fs stat, 5 levels deep": (1,)}
        for name, url in urls.items():
            levels = levels_of.get(name, (1, 50))
            for connections in levels:
                profile = self.args.profile == name and connections == 50
                spies = self.profiler(d) if profile else []
                cpu = self.cpu_meter() if connections == 50 else None
                load = wrk(url, self.token, connections, d)
                for spy in spies:
                    spy.wait(timeout=60)
                if name == "fs stat, 5 levels deep":
                    goal, met = "", None
                elif name == "/healthz":
                    goal = "≥ 2000 req/s" if connections == 50 else ""
                    met = load.rps >= 2000 if connections == 50 else None
                elif connections == 1:
                    goal, met = "p50 ≤ 4 ms", load.p50_ms <= 4
                elif connections == 50:
                    goal = "≥ 600 req/s, p99 ≤ 150 ms"
                    met = load.rps >= 600 and load.p99_ms <= 150
                else:
                    goal, met = "", None
                add(
                    Row(
                        group="control reads",
                        name=f"{name}, {connections} client{'s' if connections > 1 else ''}",
                        ours=(
                            f"{load.rps:.0f} req/s, p50 {load.p50_ms:.1f} p99 {load.p99_ms:.0f} ms"
                        ),
                        goal=goal,
                        met=met and load.errors == 0 if met is not None else None,
                        data=asdict(load),
                    )
                )
                if cpu is not None:
                    self.cpu_row(f"{name}, 50 clients", cpu, requests=load.rps * d)

    def cpu_groups(self) -> dict[str, list[int]]:
        """Each service's processes right now."""
        return {
            "web": process_tree(self.web.pid),
            "PostgreSQL": pids_named("postgres"),
            "Redis": pids_named("redis-server"),
            "worker": process_tree(self.worker.pid),
            "engine": pids_named("dockerd") + pids_named("containerd"),
        }

    def cpu_meter(self) -> dict[str, float]:
        """The CPU each service has used so far (its processes, and those they reaped)."""
        return {name: cpu_s(pids) for name, pids in self.cpu_groups().items()}

    def cpu_row(self, name: str, before: dict[str, float], requests: float) -> None:
        """CPU per request of each service since ``before``: it moves much less than req/s
        and latency with what else the machine runs (time stolen is not counted). The
        processes are listed again: those born meanwhile count whole."""
        now = self.cpu_meter()
        per_request = {
            service: (now[service] - used) * 1000 / max(requests, 1)
            for service, used in before.items()
        }
        add(
            Row(
                group="cpu per request",
                name=f"CPU per request: {name}",
                ours=", ".join(f"{service} {ms:.2f}" for service, ms in per_request.items())
                + " ms",
                data=per_request,
            )
        )

    def cpu_of(self, name: str, call: Callable[[], object], calls: int = 3) -> None:
        """A CPU-per-request row for ``calls`` calls of ``call``, one after another."""
        before = self.cpu_meter()
        for _ in range(calls):
            call()
        self.cpu_row(name, before, calls)

    def reads_under_writes(self, ws: dict[str, Any]) -> None:
        """GET workspace at 50 connections while 20 clients run execs back to back."""
        stop_at = time.monotonic() + self.args.duration + 2
        done = [0]

        def writer() -> None:
            import httpx

            with httpx.Client(
                base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
            ) as client:
                while time.monotonic() < stop_at:
                    client.post(
                        f"/api/v1/workspaces/{ws['id']}/execs",
                        json={"cmd": ["true"], "wait": True},
                    )
                    done[0] += 1

        threads = [threading.Thread(target=writer) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(1)
        load = wrk(f"{self.base}/api/v1/workspaces/{ws['id']}", self.token, 50, self.args.duration)
        for t in threads:
            t.join()
        add(
            Row(
                group="control reads",
                name="GET workspace, 50 clients, 20 exec writers",
                ours=f"{load.rps:.0f} req/s, p99 {load.p99_ms:.0f} ms",
                raw=f"writers: {done[0] / (self.args.duration + 2):.0f} execs/s",
                goal="reads not starved (p99 ≤ 150 ms)",
                met=load.p99_ms <= 150 and load.errors == 0,
                data=asdict(load),
            )
        )

    def execs(self, ws: dict[str, Any]) -> None:
        print("exec round trip")
        container = self.container(ws)
        url = f"/api/v1/workspaces/{ws['id']}/execs"

        def rest_run(cmd: list[str]) -> Callable[[], object]:
            return lambda: self.rest("POST", url, json={"cmd": cmd, "wait": True})

        def mcp_run(cmd: list[str]) -> Callable[[], object]:
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "exec_run", "arguments": {"container_id": ws["id"], "cmd": cmd}},
            }
            headers = {
                "Accept": "application/json, text/event-stream",
                "Mcp-Protocol-Version": "2025-11-25",
            }

            def call() -> object:
                response = self.http.post(f"/mcp/{INSTANCE}/", json=body, headers=headers)
                assert response.status_code == 200 and '"isError":false' in response.text.replace(
                    " ", ""
                ), response.text[:300]
                return response

            return call

        def raw_run(cmd: list[str]) -> Callable[[], object]:
            def run() -> object:
                exec_id = self.raw.exec_create(container, cmd, user="1000:1000")["Id"]
                output = self.raw.exec_start(exec_id)
                assert self.raw.exec_inspect(exec_id)["ExitCode"] == 0
                return output

            return run

        n = self.args.rounds
        for label, cmd in (("`true`", ["true"]), ("`echo hi`", ["echo", "hi"])):
            with self.profiled(f"exec {label} round trip, REST"):
                ours, raw = self.alternate(rest_run(cmd), raw_run(cmd), n)
            self.ratio_row("exec", f"exec {label} round trip, REST", ours, raw, 1.25)
            with self.profiled(f"exec {label} round trip, MCP exec_run"):
                ours, raw = self.alternate(mcp_run(cmd), raw_run(cmd), n)
            self.ratio_row("exec", f"exec {label} round trip, MCP exec_run", ours, raw, 1.25)

        self.exec_rate(url, raw_run(["true"]))

    def exec_rate(self, url: str, raw_true: Callable[[], object]) -> None:
        """Execs per second with 20 in flight, for a fixed time each: ours, then raw."""

        def run_for(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
            stop_at = time.monotonic() + seconds
            counts = [0] * 20

            def loop(i: int) -> None:
                while time.monotonic() < stop_at:
                    fn()
                    counts[i] += 1

            start = time.monotonic()
            with ThreadPoolExecutor(20) as pool:
                list(pool.map(loop, range(20)))
            return sum(counts), time.monotonic() - start

        def rate(fn: Callable[[], object], name: str) -> float:
            # Unmeasured first: the pools grow to 20 in flight (new database connections,
            # each a new PostgreSQL process; new client connections), as in steady use.
            run_for(fn, 2)
            cpu_before = self.cpu_meter()
            count, elapsed = run_for(fn, self.args.duration)
            self.cpu_row(f"execs 20 in flight, {name}", cpu_before, count)
            return count / elapsed

        import httpx

        local = threading.local()

        def rest_threaded() -> object:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(
                    base_url=self.base,
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=120,
                )
            return client.post(url, json={"cmd": ["true"], "wait": True})

        with self.profiled("execs/s, 20 in flight"):
            ours_rate = rate(rest_threaded, "ours")
        raw_rate = rate(raw_true, "raw")
        ratio = ours_rate / raw_rate
        add(
            Row(
                group="exec",
                name="execs/s, 20 in flight (`true`)",
                ours=f"{ours_rate:.1f} execs/s",
                raw=f"{raw_rate:.1f} execs/s",
                ratio=raw_rate / ours_rate,
                goal="≥ 0.8x raw",
                met=ratio >= 0.8,
                data={"ours": ours_rate, "raw": raw_rate},
            )
        )

    def files(self, ws: dict[str, Any]) -> None:
        print("files")
        container = self.container(ws)
        files_url = f"/api/v1/workspaces/{ws['id']}/files"
        self.files_transfer(container, files_url, MiB, "1 MiB", self.args.rounds)
        # Eleven: five left a p50 that moved by tens of ms between runs of one commit.
        self.files_transfer(container, files_url, 64 * MiB, "64 MiB", 11)
        self.files_list(container, files_url)

    def files_transfer(self, container: str, files_url: str, size: int, label: str, n: int) -> None:
        data = os.urandom(size)
        name = f"bench-{size}.bin"

        def ours_write() -> object:
            return self.rest(
                "PUT",
                f"{files_url}?path=/workspace/{name}",
                content=upload_pieces(data),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                },
            )

        def raw_write() -> object:
            return self.raw.put_archive(container, "/workspace", tar_of({f"raw-{name}": data}))

        def ours_read() -> object:
            response = self.http.get(f"{files_url}?path=/workspace/{name}&encoding=raw")
            assert response.status_code == 200 and len(response.content) == size
            return response

        def raw_read() -> int:
            stream, _ = self.raw.get_archive(container, f"/workspace/raw-{name}")
            with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:
                for member in tar:
                    reader = tar.extractfile(member)
                    if reader is not None:
                        return len(reader.read())
            return 0

        for kind, ours_call, raw_call in (
            ("write", ours_write, raw_write),
            ("read", ours_read, raw_read),
        ):
            with self.profiled(f"{kind} {label}"):
                ours, raw = self.alternate(ours_call, raw_call, n)
            self.ratio_row("files", f"{kind} {label}", ours, raw, 1.3)
            if size > MiB:  # where a big transfer's CPU goes, beside the engine's own
                self.cpu_of(f"{kind} {label}, ours", ours_call)
                self.cpu_of(f"{kind} {label}, raw", raw_call)

    def files_list(self, container: str, files_url: str) -> None:
        tree = {f"tree/d{i // 100}/f{i}.txt": b"x" * 10 for i in range(1000)}
        self.raw.put_archive(container, "/workspace", tar_of(tree))

        def ours_list() -> object:
            body = self.rest("GET", f"{files_url}/list?path=/workspace/tree&recursive=true")
            return body

        def raw_list() -> int:
            stream, _ = self.raw.get_archive(container, "/workspace/tree")
            with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:
                return sum(1 for _ in tar)

        with self.profiled("list 1,000 files"):
            ours, raw = self.alternate(ours_list, raw_list, self.args.rounds)
        self.ratio_row("files", "list 1,000 files", ours, raw, 1.2)

    def streaming(self, ws: dict[str, Any]) -> None:
        print("streaming")
        from websockets.sync.client import connect

        container = self.container(ws)
        size = 8 * MiB
        cmd = ["sh", "-c", f"yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL | head -c {size}"]
        url = f"/api/v1/workspaces/{ws['id']}/execs"
        headers = {"Authorization": f"Bearer {self.token}"}

        def watch(command: list[str], on_output: Callable[[bytes], None]) -> None:
            exec_id = self.rest("POST", url, json={"cmd": command})["exec_id"]
            ws_url = f"ws://127.0.0.1:{self.port}/ws/execs/{exec_id}/"
            with connect(ws_url, additional_headers=headers, max_size=None) as sock:
                for frame in sock:
                    message = json.loads(frame)
                    if message["type"] == "output":
                        data = message["data"]
                        raw = (
                            base64.b64decode(data)
                            if message["encoding"] == "base64"
                            else data.encode()
                        )
                        on_output(raw)
                    elif message["type"] == "complete":
                        assert message["status"] == "completed", message
                        return

        # The goal is about receiving output: the watcher's time is the request's start to
        # its last output byte. The "complete" message comes once every byte is also
        # stored; that time is reported beside it.
        to_last_byte: list[float] = []

        def ours_stream() -> None:
            got = [0]
            start = time.perf_counter()

            def received(data: bytes) -> None:
                got[0] += len(data)
                if got[0] == size:
                    to_last_byte.append(time.perf_counter() - start)

            watch(cmd, received)
            assert got[0] == size, got

        def raw_stream(command: list[str] = cmd) -> int:
            exec_id = self.raw.exec_create(container, command, user="1000:1000")["Id"]
            received = 0
            for out, err in self.raw.exec_start(exec_id, stream=True, demux=True):
                received += len(out or b"") + len(err or b"")
            return received

        # Fifteen pairs by default: a p50 of the four it once took moved by a fifth
        # between runs of one commit.
        n = max(5, self.args.rounds // 2)
        with self.profiled("8 MiB streamed to a websocket"):
            complete, raw = self.alternate(ours_stream, raw_stream, n)
        ours = to_last_byte[1:]  # without the warm-up's
        mib_s = 8 / p50(ours)
        raw_mib_s = 8 / p50(raw)
        add(
            Row(
                group="streaming",
                name="8 MiB streamed to a websocket",
                ours=f"{mib_s:.0f} MiB/s (last byte at p50 {ms(p50(ours)):.0f} ms, "
                f"complete (all stored) at {ms(p50(complete)):.0f} ms)",
                raw=f"{raw_mib_s:.0f} MiB/s",
                ratio=raw_mib_s / mib_s,
                goal="≥ 0.8x raw throughput",
                met=mib_s / raw_mib_s >= 0.8,
                data={"ours_s": ours, "complete_s": complete, "raw_s": raw},
            )
        )
        self.cpu_of("8 MiB to a websocket, ours", ours_stream)
        self.cpu_of("8 MiB to a websocket, raw", raw_stream)

        self.stream_gap(container, watch, n)

    def stream_gap(
        self,
        container: str,
        watch: Callable[[list[str], Callable[[bytes], None]], None],
        n: int,
    ) -> None:
        """A line printed mid-run: its delay behind the first line, ours minus raw."""
        gap_cmd = ["sh", "-c", "echo a; sleep 0.3; echo b"]

        def ours_gap() -> float:
            stamps: list[float] = []
            watch(gap_cmd, lambda data: stamps.extend([time.perf_counter()] * data.count(b"\n")))
            return stamps[1] - stamps[0]

        def raw_gap() -> float:
            exec_id = self.raw.exec_create(container, gap_cmd, user="1000:1000")["Id"]
            stamps: list[float] = []
            for out, _ in self.raw.exec_start(exec_id, stream=True, demux=True):
                stamps += [time.perf_counter()] * (out or b"").count(b"\n")
            return stamps[1] - stamps[0]

        ours_gaps, raw_gaps = [], []
        for _ in range(n + 2):
            ours_gaps.append(ours_gap())
            raw_gaps.append(raw_gap())
        delay = ms(p50([o - r for o, r in zip(ours_gaps, raw_gaps, strict=True)]))
        add(
            Row(
                group="streaming",
                name="a line printed mid-run reaches the watcher",
                ours=f"{delay:+.1f} ms vs the raw stream (p50 of pairs)",
                goal="≤ 10 ms",
                met=delay <= 10,
                data={"ours_s": ours_gaps, "raw_s": raw_gaps},
            )
        )

    def spawn_row(self) -> None:
        """REST spawn (``wait: true``) | volume + create + start with the same hardening."""
        print("cold spawn")
        raw_docker = RawDocker()

        ours: list[float] = []
        raw: list[float] = []
        with self.profiled("cold spawn"):
            for i in range(max(5, self.args.rounds // 3) + 1):  # the first round warms up
                start = time.perf_counter()
                body = self.spawn()
                took_ours = time.perf_counter() - start
                start = time.perf_counter()
                container = raw_docker.spawn()
                took_raw = time.perf_counter() - start
                if i:
                    ours.append(took_ours)
                    raw.append(took_raw)
                self.rest("DELETE", f"/api/v1/workspaces/{body['id']}")
                self.workspaces.remove(body["id"])
                raw_docker.kill(container)
        self.ratio_row("spawn", "cold spawn", ours, raw, 1.15)

    def pool_rows(self) -> None:
        """Warm spawn (server side) | create + start; resume + echo | cold spawn + echo;
        refill rate. The service calls run in this process, its worker provisions."""
        from bench_pool import measure

        print("warm pool")
        samples = measure(
            tenant=self.tenant, runs=max(10, self.args.rounds // 2), pool=5
        )  # fmt: skip
        self.ratio_row(
            "pool", "warm spawn (server side)", samples.warm_spawn, samples.raw_spawn, 0.25
        )
        p95 = ms(percentile(samples.warm_spawn, 95))
        add(
            Row(
                group="pool",
                name="warm spawn p95 (server side)",
                ours=f"{p95:.1f} ms",
                goal="≤ 50 ms",
                met=p95 <= 50,
                data={"ours_s": samples.warm_spawn},
            )
        )
        self.ratio_row(
            "pool", "resume + echo vs cold spawn + echo", samples.resume_echo,
            samples.cold_spawn_echo, 0.5,
        )  # fmt: skip
        add(
            Row(
                group="pool",
                name="pool refill (empty → 5)",
                ours=", ".join(f"{r:.1f}" for r in samples.refill_per_s) + " members/s",
                data={"per_s": samples.refill_per_s},
            )
        )

    def soak_row(self, ws: dict[str, Any]) -> None:
        """Each web process and the worker under a mixed load for --soak-minutes (soak.py)."""
        import soak

        minutes = self.args.soak_minutes
        print(f"memory ({minutes:g} minutes of mixed load)")
        execs_url = f"/api/v1/workspaces/{ws['id']}/execs"
        files_url = f"/api/v1/workspaces/{ws['id']}/files?path=/workspace/soak.bin"
        data = os.urandom(MiB)
        local = threading.local()

        def client() -> Any:
            import httpx

            if not hasattr(local, "client"):
                headers = {"Authorization": f"Bearer {self.token}"}
                local.client = httpx.Client(base_url=self.base, headers=headers, timeout=120)
            return local.client

        def exec_once() -> object:
            cmd = ["sh", "-c", "head -c 65536 /dev/urandom | od -x | head -c 200000"]
            response = client().post(execs_url, json={"cmd": cmd, "wait": True})
            assert response.status_code == 200, response.text[:300]
            return response

        def files_once() -> object:
            put = client().put(
                files_url, content=data, headers={"Content-Type": "application/octet-stream"}
            )
            got = client().get(f"{files_url}&encoding=raw")
            stat = client().get(files_url.replace("/files?", "/files/stat?"))
            assert put.status_code < 300 and got.content == data and stat.status_code == 200
            return got

        def wrk_read(seconds: int) -> object:
            return wrk(f"{self.base}/api/v1/workspaces/{ws['id']}", self.token, 16, seconds)

        duration_s, series = soak.soak(
            minutes=minutes,
            roots={"web": self.web.pid, "worker": self.worker.pid},
            wrk_read=wrk_read,
            exec_once=exec_once,
            files_once=files_once,
        )
        line, flat, data_by_process = soak.describe(duration_s, series)
        add(
            Row(
                group="memory",
                name=f"RSS after warm-up → last third, {minutes:g} min mixed load",
                ours=line,
                goal="each process flat (≤ +10 %)",
                met=flat,
                data=data_by_process,
            )
        )

    def profiler(self, duration_s: int | None) -> list[subprocess.Popen[bytes]]:
        """py-spy on the web server and on the worker (all their processes) while a row
        runs (until SIGINT without a duration): one raw profile each."""
        RESULTS.mkdir(exist_ok=True)
        self.profile_path = RESULTS / f"profile-{INSTANCE}.txt"
        self.worker_profile_path = RESULTS / f"profile-{INSTANCE}-worker.txt"
        duration = ["--duration", str(duration_s)] if duration_s is not None else []
        spy = str(Path(sys.executable).parent / "py-spy")
        options = ["--subprocesses", "--gil", "--format", "raw", "--rate", "200", "--nonblocking"]
        return [
            subprocess.Popen(
                [spy, "record", "--pid", str(pid), *options, *duration, "--output", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, path in (
                (self.web.pid, self.profile_path),
                (self.worker.pid, self.worker_profile_path),
            )
        ]

    @contextlib.contextmanager
    def profiled(self, name: str) -> Any:
        """py-spy on the web server and the worker around a ratio row, when ``--profile``
        names it."""
        if self.args.profile != name:
            yield
            return
        spies = self.profiler(None)
        time.sleep(1)  # attached to every process before the row starts
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(timeout=60)

    # --- driver ---

    def run(self) -> None:
        started = time.time()
        self.memory["web_before_mib"] = rss_mib(self.web.pid)
        self.memory["worker_before_mib"] = rss_mib(self.worker.pid)
        ws = self.spawn()
        container = self.container(ws)
        exec_ = self.rest(
            "POST",
            f"/api/v1/workspaces/{ws['id']}/execs",
            json={"cmd": ["echo", "hi"], "wait": True},
        )
        deep = "src/pkg/module/sub/hello.txt"
        self.raw.put_archive(
            container, "/workspace", tar_of({"hello.txt": b"hello\n", deep: b"hello\n"})
        )
        rows = set(self.args.rows.split(","))
        if "reads" in rows:
            self.control_reads(ws, exec_["exec_id"], "/workspace/hello.txt", f"/workspace/{deep}")
        if "reads" in rows or "writers" in rows:
            self.reads_under_writes(ws)
        if "execs" in rows:
            self.execs(ws)
        if "files" in rows:
            self.files(ws)
        if "streaming" in rows:
            self.streaming(ws)
        if "spawn" in rows:
            self.spawn_row()
        if "pool" in rows:
            self.pool_rows()
        if "soak" in rows:
            self.soak_row(ws)
        self.memory["web_after_mib"] = rss_mib(self.web.pid)
        self.memory["worker_after_mib"] = rss_mib(self.worker.pid)
        add(
            Row(
                group="memory",
                name="RSS web / worker, before → after",
                ours=(
                    f"web {self.memory['web_before_mib']:.0f} → "
                    f"{self.memory['web_after_mib']:.0f} MiB,"
                    f" worker {self.memory['worker_before_mib']:.0f} → "
                    f"{self.memory['worker_after_mib']:.0f} MiB"
                ),
                data=dict(self.memory),
            )
        )
        self.write(started)

    def write(self, started: float) -> None:
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
        load = os.getloadavg()
        payload = {
            "started": stamp,
            "web_server": self.web_label,
            "load_average": load,
            "cores": os.cpu_count(),
            "rows": [asdict(r) for r in ROWS],
        }
        json_path = RESULTS / f"{stamp}.json"
        json_path.write_text(json.dumps(payload, indent=1))
        shutil.copy(json_path, RESULTS / "latest.json")
        png = RESULTS / f"{stamp}.png"
        chart(png, stamp, self.web_label)
        shutil.copy(png, RESULTS / "latest.png")
        print()
        print(markdown_table())
        print(f"\nweb server: {self.web_label}; load average at the end {load[0]:.1f}")
        print(f"wrote {json_path} and {png}")
        if self.args.profile and getattr(self, "profile_path", None):
            print(f"\nprofile ({self.args.profile}): {self.profile_path}")
            print(profile_summary(self.profile_path))
            print(f"\nworker profile: {self.worker_profile_path}")
            print(profile_summary(self.worker_profile_path))

    def close(self) -> None:
        for ws_id in list(self.workspaces):
            with contextlib.suppress(Exception):  # best effort at the end
                self.http.delete(f"/api/v1/workspaces/{ws_id}")
        stop(self.web)
        self.worker.terminate()
        try:
            self.worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.worker.kill()


def profile_summary(path: Path, top: int = 25) -> str:
    """Share of GIL-holding samples per function, inclusive (collapsed stacks from py-spy)."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            # "function (path/to/module.py:line)" -> "function (module.py)"
            name = re.sub(r"\(.*?([^/]+\.py):\d+\)", r"(\1)", frame.strip())
            if name not in seen:
                seen.add(name)
                inclusive[name] = inclusive.get(name, 0) + n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"{100 * n / max(total, 1):5.1f}%  {name}" for name, n in ranked)


def markdown_table() -> str:
    lines = [
        "| row | ours | raw engine | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in ROWS:
        ratio = f"x{r.ratio:.2f}" if r.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(f"| {r.name} | {r.ours} | {r.raw} | {ratio} | {r.goal} | {met} |")
    return "\n".join(lines)


def chart(path: Path, stamp: str, web_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = [r for r in ROWS if r.ratio is not None]
    reads = [r for r in ROWS if r.group == "control reads" and "rps" in r.data]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 7))
    names = [r.name for r in ratios]
    values = [r.ratio or 0 for r in ratios]
    colors = ["tab:green" if r.met else "tab:red" if r.met is False else "tab:gray" for r in ratios]
    left.barh(names, values, color=colors)
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xlabel("ours / raw engine (time; lower is better)")
    left.invert_yaxis()
    left.set_title("Against the raw engine")
    right.barh([r.name for r in reads], [r.data["rps"] for r in reads], color="tab:blue")
    right.axvline(600, color="tab:red", linestyle="--", linewidth=0.8, label="600 req/s goal")
    right.set_xlabel("requests per second (wrk)")
    right.invert_yaxis()
    right.legend()
    right.set_title(f"Control reads ({web_label})")
    fig.suptitle(f"DevBench bench/run {stamp}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk / rate row")
    parser.add_argument("--rounds", type=int, default=30, help="samples per latency row")
    parser.add_argument("--quick", action="store_true", help="3 s loads, 8 rounds")
    parser.add_argument(
        "--rows",
        default="reads,execs,files,streaming,spawn,pool,soak",
        help="which groups of rows to run (comma-separated)",
    )
    parser.add_argument(
        "--server", choices=("auto", "daphne"), default="auto", help="daphne: one process"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="GET workspace",
        default=None,
        help="py-spy the web server while this control-read row runs at 50 clients "
        '("GET workspace", the default; "GET workspaces (list)", "GET exec (poll)", ...) '
        'or this files row runs ("write 64 MiB", "read 1 MiB", "list 1,000 files", ...)',
    )
    parser.add_argument(
        "--soak-minutes", type=float, default=10, help="length of the memory row's mixed load"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.soak_minutes = 3, 8, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run bench/run (it installs it) or apt-get install wrk")
    bench = Bench(args)
    try:
        bench.run()
    finally:
        bench.close()


if __name__ == "__main__":
    main()
