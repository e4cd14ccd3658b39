"""Blocking work of one MCP request (ORM, engine), off the event loop, on one thread.

Django's request cycle (and its DB connection handling) does not run on the MCP
path. A lane gives each request what Django gives each view: one thread, so
authentication, the tool's service calls and the formatting of its result share
one database connection, which is closed when the request ends. The request's
facts (id, client address) are bound for audit records.

Long waits (exec polls) hold their own request's thread only: one waiting agent
cannot starve the others.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from core import request_context
from core.request_context import RequestContext

T = TypeVar("T")


class BlockingLane:
    def __init__(self, request: RequestContext) -> None:
        self.request = request
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devbench-mcp")
        self._closed = False

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` on the lane's thread, with the request's facts bound."""
        request = self.request

        def bound(*a: Any, **kw: Any) -> T:
            token = request_context.bind(request)
            try:
                return fn(*a, **kw)
            finally:
                request_context.reset(token)

        runner = sync_to_async(bound, thread_sensitive=False, executor=self._executor)
        return await runner(*args, **kwargs)

    def close(self) -> None:
        """End of the request: close its connections once the thread is idle (never blocks).

        Work still running (a wait the client gave up on) finishes first; the
        connection is closed right after it.
        """
        if self._closed:
            return
        self._closed = True
        self._executor.submit(_close_connections)
        self._executor.shutdown(wait=False)


def _close_connections() -> None:
    close_old_connections()
    connections.close_all()
