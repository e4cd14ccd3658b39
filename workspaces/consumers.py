"""Websocket: a workspace's progress while it is created. Route
``/ws/workspaces/<ws_… or alias>/progress``.

Shaped like the template build log stream (``environment_templates.consumers``):
the row is the source of truth (the node's worker writes ``Workspace.progress``
about every 0.5 s while it pulls the image) and is read about as often.

Protocol (server -> client, JSON text frames): ``{"type": "progress", "phase",
"image", "layers_total", "layers_done", "bytes_total", "bytes_done"}`` whenever it
changes, then ``{"type": "complete", "status", "error_code", "status_message"}``
once the workspace is no longer ``creating`` (at once if it never was), and
close 1000. Authentication and error close codes as the exec stream's (another
tenant's workspace: an error frame and close 4404).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from core.errors import DevBenchError
from execution import ws_auth
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.selectors import workspace_get

_POLL_S = 0.3


def _read(pk: int) -> tuple[str, dict[str, Any], str, str]:
    return Workspace.objects.values_list("status", "progress", "error_code", "status_message").get(
        pk=pk
    )


class WorkspaceProgressConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await ws_auth.accept_bound(self)
        ref = self.scope["url_route"]["kwargs"]["workspace_id"]
        try:
            _, workspace = await database_sync_to_async(ws_auth.resolve, thread_sensitive=False)(
                self.scope, lambda p: workspace_get(actor=p, ref=ref)
            )
        except DevBenchError as exc:
            await ws_auth.refuse(self, exc)
            return
        self.pump = asyncio.create_task(self._pump(workspace.pk))

    async def _pump(self, pk: int) -> None:
        read = database_sync_to_async(_read, thread_sensitive=False)
        sent: dict[str, Any] = {}
        try:
            while True:
                status, progress, error_code, message = await read(pk)
                if progress and progress != sent:
                    await self.send(text_data=json.dumps({"type": "progress", **progress}))
                    sent = progress
                if status != WorkspaceStatus.CREATING:
                    await ws_auth.complete(
                        self, status=status, error_code=error_code, status_message=message
                    )
                    return
                await asyncio.sleep(_POLL_S)
        except Workspace.DoesNotExist:
            await self.close(code=ws_auth.CLOSE_NOT_FOUND)

    async def disconnect(self, code: int) -> None:
        pump = getattr(self, "pump", None)
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
