"""Interactive shells (a tty exec) for browser users.

A shell is not an Exec row: it has no stored output and no concurrency slot.
It is audited when opened, and its whole process tree is killed when the
websocket goes away. The web process serving the websocket holds one
connection to the workspace's node agent (or to the engine, where it serves
that node itself), which carries the tty both ways and its resizes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from execution.errors import InvalidTtySize
from execution.proctree import kill_process_tree
from execution.validation import MARKER_ENV
from tenants.audit import audited
from tenants.principal import Principal
from workspaces.models import Workspace, new_public_id
from workspaces.nodes import workspace_driver
from workspaces.runtime.base import (
    WORKSPACE_USER,
    ExecSpec,
    InteractiveExec,
    RuntimeDriver,
    resize_when_started,
)
from workspaces.suspend import ACTIVITY_RESOLUTION_S, workspace_ready, workspace_touch_open

logger = logging.getLogger(__name__)

# bash when the image has it, else sh; as a login shell so the image's profile applies.
SHELL_CMD = [
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l",
]
MAX_TTY_SIZE = 1000


def _check_size(rows: int, cols: int) -> None:
    if not (1 <= rows <= MAX_TTY_SIZE and 1 <= cols <= MAX_TTY_SIZE):
        raise InvalidTtySize(f"rows and cols must be from 1 to {MAX_TTY_SIZE}.")


@dataclass
class ShellSession:
    shell_id: str
    workspace_id: str
    container_id: str
    user: str
    tty: InteractiveExec
    driver: RuntimeDriver
    _closed: threading.Event = field(default_factory=threading.Event)
    _touched_at: float = 0.0

    def read(self) -> bytes:
        """Block for output; ``b""`` once the shell has ended."""
        return self.tty.read()

    def write(self, data: bytes) -> None:
        """Typing into the shell is activity: the workspace is not paused under it."""
        self.tty.write(data)
        now = time.monotonic()
        if now - self._touched_at >= ACTIVITY_RESOLUTION_S:
            self._touched_at = now
            workspace_touch_open(public_id=self.workspace_id)

    def resize(self, *, rows: int, cols: int) -> None:
        _check_size(rows, cols)
        self.tty.resize(rows=rows, cols=cols)

    def exit_code(self) -> int | None:
        return self.driver.exec_wait(self.tty.id, timeout_s=2).exit_code

    def close(self) -> None:
        """End the shell and everything started from it (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        kill_process_tree(
            driver=self.driver,
            container_id=self.container_id,
            exec_public_id=self.shell_id,
            user=self.user,
        )
        self.tty.close()


def shell_open(
    *, actor: Principal, workspace: Workspace, rows: int = 24, cols: int = 80
) -> ShellSession:
    """Start a login shell on a tty in the workspace, as uid 1000."""
    actor.require_scope("write")
    _check_size(rows, cols)
    shell_id = new_public_id("sh_")
    with audited(
        actor=actor,
        action="exec.shell",
        target_type="workspace",
        target_id=workspace.public_id,
        details={"shell_id": shell_id},
    ):
        workspace_ready(workspace=workspace)
        driver = workspace_driver(workspace)
        user = WORKSPACE_USER
        tty = driver.exec_open_tty(
            workspace.container_id,
            ExecSpec(
                cmd=SHELL_CMD,
                env={"TERM": "xterm-256color", MARKER_ENV: shell_id},
                user=user,
            ),
        )
        if not resize_when_started(tty, rows=rows, cols=cols):
            logger.info("initial resize of shell %s failed", shell_id)
    return ShellSession(
        shell_id=shell_id,
        workspace_id=workspace.public_id,
        container_id=workspace.container_id,
        user=user,
        tty=tty,
        driver=driver,
    )
