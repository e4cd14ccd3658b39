"""Three Docker engines, a node worker each, and a web tier without any engine.

Everything goes through the web tier's REST, MCP and websocket interfaces; the
web process's DOCKER_HOST is a socket nobody serves, so every engine call it
makes must travel to a node worker's agent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import stat
import tarfile
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.mcp_live import error_code, mcp_call, ok
from tests.nodes.conftest import TLS_ONLY_NODE, Cluster
from tests.processes import wait_for
from workspaces.models import Node, Workspace
from workspaces.nodes import node_set_drain, nodes_check

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def _spawn(rest: Any, **body: Any) -> Any:
    return rest.post("/workspaces", json={"image": "devbench/busybox:latest", **body})


def _wait_running(ids: list[str], timeout_s: float = 180) -> None:
    def done() -> bool:
        statuses = Counter(
            Workspace.objects.filter(public_id__in=ids).values_list("status", flat=True)
        )
        assert statuses.get("error", 0) == 0, list(
            Workspace.objects.filter(public_id__in=ids, status="error").values_list(
                "status_message", flat=True
            )
        )
        return statuses.get("running", 0) == len(ids)

    wait_for(done, what="every workspace running", timeout_s=timeout_s)


def _per_node() -> dict[str, int]:
    live = Workspace.objects.exclude(status="removed").values_list("node", flat=True)
    return dict(Counter(live))


def test_spawns_spread_by_capacity_labels_and_draining(live_cluster: Cluster, rest: Any) -> None:
    # A draining node gets nothing new: ssd workspaces all land on n2 while n3 drains.
    node_set_drain(node=Node.objects.get(name="n3"), drain=True)
    ids = []
    for _ in range(4):
        response = _spawn(rest, wait=False, node_labels={"disk": "ssd"})
        assert response.status_code == 202, response.text
        assert response.json()["node"] == "n2"
        ids.append(response.json()["id"])
    node_set_drain(node=Node.objects.get(name="n3"), drain=False)

    # Spread: each spawn goes to the node with the largest free share.
    for count in range(26):
        response = _spawn(rest, wait=False)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
        if count == 10:  # 15 placed of 30 slots: every node about half full
            shares = {
                name: used / size
                for (name, size), used in zip(
                    {"n1": 14, "n2": 10, "n3": 6}.items(), _counts(("n1", "n2", "n3")), strict=True
                )
            }
            assert max(shares.values()) - min(shares.values()) <= 0.25, shares
    assert _per_node() == {"n1": 14, "n2": 10, "n3": 6}

    # Full: the next spawn is refused with a clear code; a label no node has is another.
    full = _spawn(rest, wait=False)
    assert full.status_code == 503 and full.json()["code"] == "capacity_exhausted", full.text
    nowhere = _spawn(rest, wait=False, node_labels={"gpu": "yes"})
    assert nowhere.status_code == 422 and nowhere.json()["code"] == "node_labels_unmatched"

    _wait_running(ids)
    status = ok(
        mcp_call(live_cluster.web.mcp_url(rest.token.tenant.slug), rest.token.raw, "system_status")
    )
    load = {n["name"]: (n["workspaces"], n["max_workspaces"], n["state"]) for n in status["nodes"]}
    assert {k: load[k] for k in ("n1", "n2", "n3")} == {
        "n1": (14, 14, "active"),
        "n2": (10, 10, "active"),
        "n3": (6, 6, "active"),
    }
    # Kills go through the nodes too.
    for workspace_id in ids:
        assert rest.delete(f"/workspaces/{workspace_id}?force=true").status_code == 200
    assert _per_node() == {}


def _counts(names: tuple[str, ...]) -> list[int]:
    per_node = _per_node()
    return [per_node.get(name, 0) for name in names]


def _exec(rest: Any, workspace_id: str, cmd: list[str]) -> dict[str, Any]:
    response = rest.post(f"/workspaces/{workspace_id}/execs", json={"cmd": cmd, "wait": True})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _round_trip(rest: Any, workspace_id: str, path: str, data: bytes) -> None:
    put = rest.put(
        f"/workspaces/{workspace_id}/files",
        params={"path": path},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200, put.text
    digest = hashlib.sha256()
    size = 0
    with rest.stream(
        "GET", f"/workspaces/{workspace_id}/files", params={"path": path, "encoding": "raw"}
    ) as got:
        assert got.status_code == 200
        for chunk in got.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    assert (size, digest.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())


def _ws(cluster: Cluster, path: str, token: Any) -> Any:
    url = cluster.web.base_url.replace("http://", "ws://") + path
    return connect(
        url, additional_headers={"Authorization": f"Bearer {token.raw}"}, open_timeout=30
    )


def _shell_round_trip(cluster: Cluster, workspace_id: str, token: Any) -> None:
    with _ws(cluster, f"/ws/workspaces/{workspace_id}/shell?rows=30&cols=90", token) as ws:
        ws.send(b"stty size; echo hel''lo-$((1+2))\n")
        seen = ""
        while "hello-3" not in seen:
            frame = ws.recv(timeout=30)
            seen += frame.decode(errors="replace") if isinstance(frame, bytes) else ""
        assert "30 90" in seen
        ws.send(json.dumps({"type": "resize", "rows": 40, "cols": 100}))
        ws.send(b"stty size\n")
        while "40 100" not in seen:
            frame = ws.recv(timeout=30)
            seen += frame.decode(errors="replace") if isinstance(frame, bytes) else ""
        ws.send(b"exit 3\n")
        frames = []
        try:
            while True:
                frame = ws.recv(timeout=30)
                if isinstance(frame, str):
                    frames.append(json.loads(frame))
        except ConnectionClosed:
            pass
    assert {"type": "exit", "exit_code": 3} in frames


def _watchers(cluster: Cluster, way: str) -> float:
    """The web tier's count of exec watchers whose live output came ``way``."""
    scraped = httpx.get(cluster.web.base_url + "/metrics", timeout=30).text
    match = re.search(rf'^devbench_exec_watchers_total{{way="{way}"}} (\S+)$', scraped, re.M)
    return float(match.group(1)) if match else 0.0


def _exec_over_websocket(cluster: Cluster, rest: Any, workspace_id: str) -> None:
    """A watcher that joins while the exec runs follows it from its runner, on the node's
    worker: both streams in order, then 2 MiB byte-exact, then the end."""
    followed_before = _watchers(cluster, "runner")
    script = "echo one; echo two >&2; sleep 0.5; head -c 2097152 /dev/zero | tr '\\0' x"
    started = rest.post(f"/workspaces/{workspace_id}/execs", json={"cmd": ["sh", "-c", script]})
    assert started.status_code == 202, started.text
    exec_id = started.json()["exec_id"]
    messages = []
    with _ws(cluster, f"/ws/execs/{exec_id}/", rest.token) as ws:
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        except ConnectionClosed:
            pass
    outputs = [m for m in messages if m["type"] == "output"]
    assert [m["seq"] for m in outputs] == list(range(1, len(outputs) + 1))
    assert sorted((m["stream"], m["data"]) for m in outputs[:2]) == [
        ("stderr", "two\n"),
        ("stdout", "one\n"),
    ]
    assert "".join(m["data"] for m in outputs[2:]) == "x" * 2097152
    assert messages[-1]["type"] == "complete" and messages[-1]["exit_code"] == 0
    assert _watchers(cluster, "runner") == followed_before + 1


def _unix_connections_to(path: str) -> int:
    """Connections accepted on the Unix socket ``path`` still open (its listener aside)."""
    with open("/proc/net/unix") as table:
        ends = [line.split() for line in table.readlines()[1:]]
    # Columns: Num RefCount Protocol Flags Type St Inode Path; St 01 is unconnected.
    return sum(1 for end in ends if len(end) == 8 and end[7] == path and end[5] == "03")


def test_every_operation_on_every_node_through_an_engineless_web_tier(
    live_cluster: Cluster, rest: Any
) -> None:
    from execution.models import Exec
    from workspaces.models import Node

    # Every agent speaks TLS with the certificate its worker registered (what the web
    # tier pins), and all but one also listen on a Unix socket, which the web tier
    # (on their host) uses instead: everything below crosses both kinds of connection.
    rows = list(Node.objects.filter(name__in=["n1", "n2", "n3"]))
    assert len(rows) == 3
    for row in rows:
        assert row.agent_url.startswith("https://"), row.agent_url
        assert row.agent_cert.startswith("-----BEGIN CERTIFICATE-----")
        if row.name == TLS_ONLY_NODE:
            assert row.agent_socket == ""
            continue
        assert stat.S_ISSOCK(os.stat(row.agent_socket).st_mode)
        with socket.socket(socket.AF_UNIX) as local:
            local.connect(row.agent_socket)
            local.sendall(b"POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert local.recv(64).startswith(b"HTTP/1.1 401")  # the agent, wanting its secret
    sockets = {row.name: row.agent_socket for row in rows}
    mcp_url = live_cluster.web.mcp_url(rest.token.tenant.slug)
    small = os.urandom(1024 * 1024)
    large = os.urandom(64 * 1024 * 1024)
    for node in ("n1", "n2", "n3"):
        spawned = _spawn(rest, node_labels={"node": node})
        assert spawned.status_code == 201, spawned.text
        workspace = spawned.json()
        assert (workspace["node"], workspace["status"]) == (node, "running")
        ws_id = workspace["id"]

        # exec (REST, MCP, websocket) and the shell (websocket)
        ran = _exec(rest, ws_id, ["sh", "-c", "echo hi-$((40+2))"])
        assert ran["stdout"] == "hi-42\n"
        # The web tier handed the runner to the node's worker through its agent (no
        # round trip through the broker): it ran in a hand-off thread of that worker.
        runner = Exec.objects.get(public_id=ran["exec_id"]).worker
        assert "/exec-hand-off-" in runner, runner
        run = ok(
            mcp_call(
                mcp_url, rest.token.raw, "exec_run", {"container_id": ws_id, "cmd": ["echo", node]}
            )
        )
        assert run["stdout"] == f"{node}\n"
        _exec_over_websocket(live_cluster, rest, ws_id)
        _shell_round_trip(live_cluster, ws_id, rest.token)

        # files: 1 MiB and 64 MiB byte-exact, MCP write/read, listing, archives
        _round_trip(rest, ws_id, "small.bin", small)
        _round_trip(rest, ws_id, "big/large.bin", large)
        if node != TLS_ONLY_NODE:  # the web tier's kept-alive connections are on the socket
            # (A large download's connection ends with it: the engine's chunks are passed
            # on as they came.)
            assert rest.get(f"/workspaces/{ws_id}/stats").status_code == 200
            assert _unix_connections_to(sockets[node]) >= 1
        written = ok(mcp_call(mcp_url, rest.token.raw, "fs_write", {
            "container_id": ws_id, "path": "mcp.txt", "content": f"from {node}",
        }))  # fmt: skip
        assert written["size"] == len(f"from {node}")
        read = ok(
            mcp_call(mcp_url, rest.token.raw, "fs_read", {"container_id": ws_id, "path": "mcp.txt"})
        )
        assert read["content"] == f"from {node}"
        listing = rest.get(f"/workspaces/{ws_id}/files/list", params={"path": "/workspace"})
        assert {"small.bin", "big", "mcp.txt"} <= {e["name"] for e in listing.json()["items"]}
        # The node's agent reads the tree; the sizes it reports are the files' own.
        deep = rest.get(
            f"/workspaces/{ws_id}/files/list", params={"path": "/workspace", "recursive": "true"}
        )
        sizes = {e["path"]: e["size"] for e in deep.json()["items"]}
        assert sizes["/workspace/big/large.bin"] == len(large)
        assert sizes["/workspace/small.bin"] == len(small)
        # A missing path is the engine's own error on the node: answered as locally.
        for missing in ("/files", "/files/list"):
            gone = rest.get(f"/workspaces/{ws_id}{missing}", params={"path": "nope.txt"})
            assert (gone.status_code, gone.json()["code"], gone.json()["message"]) == (
                404,
                "not_found",
                "/workspace/nope.txt does not exist.",
            ), gone.text
        archive = rest.get(f"/workspaces/{ws_id}/archive", params={"path": "big"})
        assert archive.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
            member = tar.getmember("big/large.bin")
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == large

        # stats (REST and MCP), stop and start
        stats = rest.get(f"/workspaces/{ws_id}/stats")
        assert stats.status_code == 200 and stats.json()["memory_limit_mb"] == 512
        ok(mcp_call(mcp_url, rest.token.raw, "container_stats", {"container_id": ws_id}))
        assert rest.post(f"/workspaces/{ws_id}/stop").json()["status"] == "stopped"
        assert rest.post(f"/workspaces/{ws_id}/start").json()["status"] == "running"
        assert _exec(rest, ws_id, ["cat", "/workspace/mcp.txt"])["stdout"] == f"from {node}"
        assert rest.delete(f"/workspaces/{ws_id}").json()["status"] == "removed"

    # Reconcile and GC run per node, through the nodes.
    assert rest.post("/maintenance/reconcile").status_code == 200
    assert rest.post("/maintenance/gc").status_code == 200


def test_node_loss_and_return(live_cluster: Cluster, rest: Any, tenant: Any) -> None:
    from django.test import Client

    from tests.factories import MembershipFactory, UserFactory

    mcp_url = live_cluster.web.mcp_url(rest.token.tenant.slug)
    lost_one = _spawn(rest, persistent=True, node_labels={"node": "n1"}).json()
    ephemeral = _spawn(rest, node_labels={"node": "n1"}).json()
    survivor = _spawn(rest, persistent=True, node_labels={"node": "n2"}).json()
    assert (lost_one["node"], ephemeral["node"], survivor["node"]) == ("n1", "n1", "n2")
    _exec(rest, lost_one["id"], ["sh", "-c", "echo kept > /workspace/data.txt"])
    started = rest.post(
        f"/workspaces/{lost_one['id']}/execs",
        json={"cmd": ["sh", "-c", "echo before; sleep 600"]},
    ).json()
    exec_id = started["exec_id"]
    wait_for(lambda: "before" in rest.get(f"/execs/{exec_id}").text, what="the exec's first output")

    # The other node keeps running commands throughout.
    failures: list[str] = []
    runs = 0
    stop = threading.Event()

    def keep_working() -> None:
        nonlocal runs
        while not stop.is_set():
            result = rest.post(
                f"/workspaces/{survivor['id']}/execs", json={"cmd": ["echo", "ok"], "wait": True}
            )
            if result.status_code != 200 or result.json()["stdout"] != "ok\n":
                failures.append(result.text)
            runs += 1

    worker = threading.Thread(target=keep_working)
    worker.start()
    try:
        live_cluster.workers["n1"].kill()
        live_cluster.engines["n1"].stop()
        wait_for(
            lambda: "n1" in nodes_check() or _state("n1") == "down", what="n1 down", timeout_s=60
        )

        # Unavailable, with one clear code, on every interface.
        got = rest.get(f"/workspaces/{lost_one['id']}").json()
        assert (got["status"], got["error_code"]) == ("unavailable", "node_unavailable")
        refused = rest.post(f"/workspaces/{lost_one['id']}/execs", json={"cmd": ["true"]})
        assert (refused.status_code, refused.json()["code"]) == (503, "workspace_unavailable")
        files = rest.get(f"/workspaces/{lost_one['id']}/files", params={"path": "data.txt"})
        assert files.json()["code"] == "workspace_unavailable"
        tool = mcp_call(
            mcp_url, rest.token.raw, "exec_run", {"container_id": lost_one["id"], "cmd": ["true"]}
        )
        assert error_code(tool) == "workspace_unavailable"
        with _ws(live_cluster, f"/ws/workspaces/{lost_one['id']}/shell", rest.token) as ws:
            error = json.loads(ws.recv(timeout=30))
            assert error["type"] == "error" and error["code"] == "workspace_unavailable"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503
        user = UserFactory()
        MembershipFactory(user=user, tenant=tenant, role="member")
        browser = Client()
        browser.force_login(user)
        page = browser.get(f"/t/{tenant.slug}/workspaces/{lost_one['id']}/status").json()
        assert page["status"] == "unavailable"
        html = browser.get(f"/t/{tenant.slug}/workspaces/{lost_one['id']}/").content.decode()
        assert "node_unavailable" in html and "stopped answering" in html

        # The exec ended lost; what it printed before is still there.
        polled = rest.get(f"/execs/{exec_id}").json()
        assert polled["status"] == "lost" and polled["error_code"] == "node_unavailable"
        assert "before" in "".join(m["data"] for m in polled["messages"])
    finally:
        time.sleep(1)  # a few more commands on the survivor while n1 is gone
        stop.set()
        worker.join()
    assert failures == [] and runs > 0

    # It comes back: the persistent workspace returns with its files; the ephemeral
    # one is stopped (its container exited with the engine).
    live_cluster.engines["n1"].start()
    live_cluster.workers["n1"].restart()
    wait_for(
        lambda: rest.get(f"/workspaces/{lost_one['id']}").json()["status"] == "running",
        what="the persistent workspace back",
        timeout_s=90,
    )
    assert _exec(rest, lost_one["id"], ["cat", "/workspace/data.txt"])["stdout"] == "kept\n"
    wait_for(
        lambda: rest.get(f"/workspaces/{ephemeral['id']}").json()["status"] == "stopped",
        what="the ephemeral workspace stopped",
    )
    for ws_id in (lost_one["id"], ephemeral["id"], survivor["id"]):
        rest.delete(f"/workspaces/{ws_id}?force=true")


def _state(name: str) -> str:
    return str(Node.objects.get(name=name).state)
