"""Websocket: a template's build log, live. Route ``/ws/templates/<tp_…>/log``.

Protocol (server -> client, JSON text frames): ``{"type": "log", "offset", "text"}``
as the stored log grows (``offset`` is where ``text`` starts; connect with
``?offset=N`` to resume), then ``{"type": "complete", "status", "error_code",
"status_message"}`` once the build has ended, and close 1000. Authentication and
error close codes as the exec stream's (another tenant's template is 4404).
"""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from core.errors import DevBenchError
from execution import ws_auth
from workspaces.environment_templates.schemas import TemplateLogQuery
from workspaces.environment_templates.selectors import template_get
from workspaces.models import Template, TemplateStatus

logger = logging.getLogger(__name__)

# The log is stored every ~0.3 s by the build; read it about as often.
_POLL_S = 0.3


def _read(pk: int) -> tuple[str, str, str, str]:
    row = Template.objects.filter(pk=pk).values_list(
        "build_log", "status", "error_code", "status_message"
    )
    return row.get()


class TemplateLogConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await ws_auth.accept_bound(self)
        ref = self.scope["url_route"]["kwargs"]["template_id"]
        try:
            offset = ws_auth.parse(TemplateLogQuery, ws_auth.query_params(self.scope)).offset
            _, template = await database_sync_to_async(ws_auth.resolve, thread_sensitive=False)(
                self.scope, lambda p: template_get(actor=p, ref=ref)
            )
        except DevBenchError as exc:
            await ws_auth.refuse(self, exc)
            return
        self.pump = asyncio.create_task(self._pump(template.pk, offset))

    async def _pump(self, pk: int, offset: int) -> None:
        read = database_sync_to_async(_read, thread_sensitive=False)
        try:
            while True:
                log, status, error_code, message = await read(pk)
                if len(log) > offset:
                    await self.send(
                        text_data=json.dumps(
                            {"type": "log", "offset": offset, "text": log[offset:]}
                        )
                    )
                    offset = len(log)
                if status != TemplateStatus.BUILDING:
                    await ws_auth.complete(
                        self, status=status, error_code=error_code, status_message=message
                    )
                    return
                await asyncio.sleep(_POLL_S)
        except Template.DoesNotExist:
            await self.close(code=ws_auth.CLOSE_NOT_FOUND)  # deleted meanwhile

    async def disconnect(self, code: int) -> None:
        pump = getattr(self, "pump", None)
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
