"""A small cluster on this machine: extra Docker engines, node workers, an engine-less web tier.

Each engine is its own ``dockerd`` (own socket, data root, exec root, pid file
and managed containerd) under /run/devbench-test-*/, started and stopped here;
the workspace image is copied into it from the main engine with
``docker save | docker load``. Each node worker is a Celery worker on its own
queue whose only engine is its node's. The web tier (daphne) points DOCKER_HOST
at a socket nobody serves, so every engine call must go through a node.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import ROOT, TEST_INSTANCE, ManagedProcess, service_env

IMAGE = "devbench/busybox:latest"
DEAD_DOCKER_HOST = f"unix:///run/devbench-test-{TEST_INSTANCE}-none/docker.sock"


class Engine:
    """One extra dockerd; ``stop`` and ``start`` keep its data (containers, volumes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.run_dir = Path(f"/run/devbench-test-{TEST_INSTANCE}-{name}")
        self.data_root = Path(f"/var/lib/devbench-test-{TEST_INSTANCE}-{name}")
        self.socket = self.run_dir / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = ROOT / "var" / f"dockerd-{name}-{TEST_INSTANCE}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self._load_image()

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["dockerd", "--host", self.url, "--data-root", str(self.data_root),
                "--exec-root", str(self.run_dir / "exec"),
                "--pidfile", str(self.run_dir / "pid"), "--bridge", "none",
                "--iptables=false", "--ip6tables=false", "--ip-masq=false"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while subprocess.run(self._cli("version"), capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd {self.name} did not start: see {self.log_path}")
            time.sleep(0.2)

    def _cli(self, *args: str) -> list[str]:
        return ["docker", "-H", self.url, *args]

    def _load_image(self) -> None:
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(self._cli("load", "-q"), stdin=save.stdout, check=True, capture_output=True)
        if save.wait() != 0:
            raise RuntimeError(f"docker save {IMAGE} failed")

    def stop(self) -> None:
        """Stop the engine as a host shutdown would (SIGTERM: containers stop with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        subprocess.run(["umount", "-R", str(self.data_root)], capture_output=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


class NodeWorker(ManagedProcess):
    """A node's Celery worker: its own queue, its own engine, nothing else."""

    what = "node worker"

    def __init__(self, db_name: str, *, node: str, engine: Engine, env: dict[str, str]) -> None:
        self.node = node
        argv = [sys.executable, "-m", "celery", "-A", "devbench_site", "worker", "-P", "threads",
                "-c", "8", "-Q", f"node.{node}", "-n", f"{node}@{TEST_INSTANCE}",
                "--without-mingle", "--without-gossip", "--loglevel=INFO"]  # fmt: skip
        worker_env = {
            **service_env(db_name),
            "DEVBENCH_NODE": node,
            "DOCKER_HOST": engine.url,
            "DEVBENCH_ENGINE_DIRECT": "false",  # it serves its node because it consumes its queue
            **env,
        }
        super().__init__(argv, env=worker_env, log_name=f"celery-node-{node}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no goodbye; the node just goes silent."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def _start(self) -> None:
        # A restarted worker appends to the same log: only what it writes counts.
        self._ready_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        super()._start()

    def is_ready(self) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(getattr(self, "_ready_from", 0))
            return b"ready." in log.read()
