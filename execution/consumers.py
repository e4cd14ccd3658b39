"""Websockets: an exec's output live, and an interactive shell.

Routes: ``/ws/execs/<exec id>/`` and ``/ws/workspaces/<workspace id or alias>/shell``.

Exec stream protocol (server -> client, JSON text frames):
  {"type": "output", "seq", "stream", "data", "encoding"}   in seq order, no gaps or
      repeats (a gap only where the output cap dropped the oldest output);
  {"type": "complete", "status", "exit_code", ...}          last, then close 1000.
Connect with ``?after_seq=N`` to resume after the last seq received. Client ->
server: ``{"type": "cancel"}`` cancels the exec.

Shell protocol: binary frames both ways are raw tty bytes; text frames from
the client are JSON ``{"type": "stdin", "data": "..."}`` or
``{"type": "resize", "rows", "cols"}``; the server ends with
``{"type": "exit", "exit_code"}`` and closes.

Errors close the socket with 4000 + the HTTP status of the error (4401, 4403,
4404, 4409…); another tenant's exec or workspace is 4404, like a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from core import fastjson, metrics
from core.errors import DevBenchError
from core.validation import json_loads_strict
from execution import live, notify, selectors, services, ws_auth
from execution.ahead import AheadBuffer
from execution.errors import InvalidMessage
from execution.schemas import ExecEndOut, ExecPollQuery, ShellQuery, ShellResizeIn
from execution.selectors import ExecMessage, exec_message
from execution.shell import ShellSession, shell_open
from tenants.principal import Principal
from workspaces.selectors import workspace_get

logger = logging.getLogger(__name__)

R = TypeVar("R")


def _in_thread(func: Callable[..., R]) -> Callable[..., Any]:
    """Run sync code (ORM, engine) off the event loop in a pool thread of its own.

    ``database_sync_to_async`` defaults to one thread shared by every consumer of
    the process; a slow call there (a cancel waiting for the end, an engine call)
    would stall every other websocket's database access.
    """
    return database_sync_to_async(func, thread_sensitive=False)


def _output_frame(message: ExecMessage) -> str:
    return fastjson.dumps_text({"type": "output", **asdict(message)})


class _DevBenchConsumer(AsyncWebsocketConsumer):
    async def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, DevBenchError):
            await ws_auth.refuse(self, exc)
            return
        logger.exception("websocket %s failed", self.scope.get("path"), exc_info=exc)
        await self.close(code=ws_auth.CLOSE_INTERNAL)


class ExecStreamConsumer(_DevBenchConsumer):
    principal: Principal
    exec_id: str
    sent_seq: int

    async def connect(self) -> None:
        # Accept first: close codes only reach a client after the handshake.
        await ws_auth.accept_bound(self)
        self.done = False
        self.lock = asyncio.Lock()
        self.fallback: asyncio.Task[None] | None = None
        self.canceller: asyncio.Task[None] | None = None
        self.following: live.Batches | None = None
        self.output_subscribed = False
        self.ahead = AheadBuffer()
        self.live_at = 0.0  # loop time of the last output that came live, in order
        exec_id = self.scope["url_route"]["kwargs"]["exec_id"]
        try:
            query = ws_auth.parse(ExecPollQuery, ws_auth.query_params(self.scope))
            self.sent_seq = query.after_seq
            self.principal, exec_ = await _in_thread(ws_auth.resolve)(
                self.scope, lambda p: selectors.exec_get(actor=p, exec_id=exec_id)
            )
        except Exception as exc:
            await self._fail(exc)
            return
        self.exec_id = exec_.public_id
        self.group = notify.exec_group(self.exec_id)
        if not exec_.is_terminal and notify.layer_crosses_processes(self.channel_layer):
            # Output straight from the runner; without it, through the channel layer.
            self.following = await _in_thread(live.follow)(
                node=exec_.workspace.node, public_id=self.exec_id, after_seq=self.sent_seq
            )
        # Subscribe (and follow) before reading the backlog: nothing stored later can be
        # missed. A layer that cannot subscribe now costs latency: _recheck reads the
        # database.
        await notify.subscribe(self.channel_layer, self.exec_id, self.channel_name)
        if self.following is None:
            await self._subscribe_output()
        metrics.EXEC_WATCHERS.labels(way=self._way(exec_)).inc()
        if self.following is None:
            await self._pump()
        # A follower's backlog comes from the runner, which keeps what the store may not
        # have written yet: reading it from the database too would send the stored part
        # twice over (a bytea read, then the same bytes again from the follow). Output
        # the runner no longer keeps arrives as a gap, which _send_live fills from here.
        if self.done:
            return
        self.fallback = asyncio.create_task(self._recheck())
        if self.following is not None:
            # A thread of its own blocks on the follow (as the shell's reader does); each
            # batch is sent before the next is read: back-pressure up to the runner's
            # memory, which drops what a slow watcher then reads from the database.
            threading.Thread(
                target=self._follow_output,
                args=(self.following, asyncio.get_running_loop()),
                name=f"exec-follow-{self.exec_id}",
                daemon=True,
            ).start()

    async def disconnect(self, code: int) -> None:
        self.done = True
        fallback = getattr(self, "fallback", None)
        if fallback is not None:
            fallback.cancel()
        following = getattr(self, "following", None)
        if following is not None:
            following.close()
        if hasattr(self, "group"):
            await notify.unsubscribe(self.channel_layer, self.exec_id, self.channel_name)
        if getattr(self, "output_subscribed", False):
            await notify.unsubscribe_output(self.channel_layer, self.exec_id, self.channel_name)

    def _way(self, exec_: Any) -> str:
        """How live output reaches this watcher (the metric's label)."""
        if exec_.is_terminal:
            return "ended"
        if self.following is not None:
            return "runner"
        return "channel_layer" if notify.live_output() else "database"

    async def _subscribe_output(self) -> None:
        self.output_subscribed = True
        await notify.subscribe_output(self.channel_layer, self.exec_id, self.channel_name)

    def _follow_output(self, following: live.Batches, loop: asyncio.AbstractEventLoop) -> None:
        try:
            for chunks in following:
                asyncio.run_coroutine_threadsafe(self._followed(chunks), loop).result(timeout=60)
        except Exception as exc:
            if not self.done:
                logger.info("following exec %s stopped: %r", self.exec_id, exc)
        finally:
            following.close()  # one left mid-stream must not hold the agent's thread
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            asyncio.run_coroutine_threadsafe(self._follow_ended(), loop)

    async def _followed(self, chunks: list[list[Any]]) -> None:
        if not await self._send_live(chunks):
            await self._pump()

    async def _follow_ended(self) -> None:
        """The runner's output ended (its end is stored), or the follow broke: the
        database has the rest; live output through the channel layer from now on."""
        self.following = None
        await self._pump()
        if not self.done and not self.output_subscribed:
            await self._subscribe_output()
            await self._pump()

    async def exec_event(self, message: dict[str, Any]) -> None:
        chunks = message.get("chunks")
        if chunks:
            if await self._send_live(chunks):
                return
        elif message.get("status") == "running" and (
            message.get("last_seq", 0) <= self.sent_seq or self._follow_covers()
        ):
            return  # stored now, but already sent live (or on its way from the runner)
        await self._pump()

    def _follow_covers(self) -> bool:
        """Whether the follow brings everything stored: it does unless it left a gap that
        only the database can fill. The store announces each batch it writes; a follower
        a little behind the store would otherwise read from the database the same bytes
        the runner is sending it (and its end comes when the follow ends)."""
        return self.following is not None and not self.ahead

    async def _send_live(self, chunks: list[list[Any]]) -> bool:
        """Send output published before it was stored; False if the database must be read
        for output that came before it and this socket has not sent yet."""
        async with self.lock:
            if self.done:
                return True
            if chunks[0][0] > self.sent_seq + 1:
                # Kept until the database fills the gap: the store's wake-up after it
                # (or the recheck) reads it. Read once now, when the gap opens.
                waiting = bool(self.ahead)
                return self.ahead.keep(chunks, sent_seq=self.sent_seq) and waiting
            await self._send_chunks(chunks)
            self.live_at = asyncio.get_running_loop().time()
            await self._send_chunks(self.ahead.take_ready(sent_seq=self.sent_seq))
            return True

    async def _send_chunks(self, chunks: Sequence[Sequence[Any]]) -> None:
        for seq, stream, data in chunks:
            if seq > self.sent_seq:
                message = exec_message(seq=seq, stream=stream, data=data)
                await self.send(text_data=_output_frame(message))
                self.sent_seq = seq

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "{}")
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "cancel" and not self.done:
            self.canceller = asyncio.create_task(self._cancel())

    async def _cancel(self) -> None:
        try:
            await _in_thread(services.exec_cancel)(actor=self.principal, exec_id=self.exec_id)
        except DevBenchError as exc:
            await self.send(text_data=json.dumps({"type": "error", **exc.as_dict()}))
        await self._pump()

    async def _recheck(self) -> None:
        # The channel layer may drop wake-ups (full channel); the database does not.
        # While output keeps coming live in order nothing was missed: reading the
        # database then would only race the messages already waiting for this socket
        # (and send from the database what they carry).
        loop = asyncio.get_running_loop()
        while not self.done:
            await asyncio.sleep(notify.RECHECK_S)
            if self.ahead or loop.time() - self.live_at >= notify.RECHECK_S:
                await self._pump()

    async def _pump(self) -> None:
        """Send everything stored after the last sent seq; finish once the exec has ended."""
        async with self.lock:
            try:
                while not self.done:
                    result = await _in_thread(services.exec_poll)(
                        actor=self.principal, exec_id=self.exec_id, after_seq=self.sent_seq
                    )
                    for message in result.messages:
                        await self.send(text_data=_output_frame(message))
                        self.sent_seq = message.seq
                    if self.ahead and not result.complete:
                        # The database has caught up with output that came live.
                        await self._send_chunks(self.ahead.take_ready(sent_seq=self.sent_seq))
                    if result.complete:
                        await self._complete(result)
                    if not result.messages:
                        return
            except Exception as exc:
                self.done = True
                await self._fail(exc)

    async def _complete(self, result: services.ExecPollResult) -> None:
        self.done = True
        end = ExecEndOut.from_poll(result).model_dump(mode="json")
        await self.send(text_data=json.dumps({"type": "complete", **end}))
        await self.close(code=1000)


class ShellConsumer(_DevBenchConsumer):
    session: ShellSession | None = None
    reader: threading.Thread | None = None

    async def connect(self) -> None:
        await ws_auth.accept_bound(self)
        ref = self.scope["url_route"]["kwargs"]["workspace_id"]
        try:
            size = ws_auth.parse(ShellQuery, ws_auth.query_params(self.scope))
            rows, cols = size.rows, size.cols
            principal, workspace = await _in_thread(ws_auth.resolve)(
                self.scope, lambda p: workspace_get(actor=p, ref=ref)
            )
            self.session = await _in_thread(shell_open)(
                actor=principal, workspace=workspace, rows=rows, cols=cols
            )
        except Exception as exc:
            await self._fail(exc)
            return
        # A thread of its own blocks on the tty (a pool thread would be held for the
        # shell's whole life); each frame is sent before the next read: back-pressure.
        loop = asyncio.get_running_loop()
        self.reader = threading.Thread(
            target=self._forward_output,
            args=(self.session, loop),
            name=f"shell-{self.session.shell_id}",
            daemon=True,
        )
        self.reader.start()

    def _forward_output(self, session: ShellSession, loop: asyncio.AbstractEventLoop) -> None:
        def on_loop(coro: Any) -> None:
            asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

        try:
            while data := session.read():
                on_loop(self.send(bytes_data=data))
            if self.session is session:  # ended by itself, not by the client leaving
                exit_code = session.exit_code()
                on_loop(self.send(text_data=json.dumps({"type": "exit", "exit_code": exit_code})))
                on_loop(self.close(code=1000))
        except Exception as exc:
            with contextlib.suppress(Exception):
                on_loop(self._fail(exc))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        session = self.session
        if session is None:
            return
        try:
            if bytes_data is not None:
                await asyncio.to_thread(session.write, bytes_data)
                return
            message = json_loads_strict(text_data or "{}")
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "stdin" and isinstance(message.get("data"), str):
                # Surrogates cannot reach a terminal; anything else is what was typed.
                await asyncio.to_thread(session.write, message["data"].encode("utf-8", "replace"))
            elif kind == "resize":
                resize = ws_auth.parse(ShellResizeIn, message)
                await asyncio.to_thread(session.resize, rows=resize.rows, cols=resize.cols)
            else:
                raise InvalidMessage('Send binary frames, or {"type": "stdin"|"resize", ...}.')
        except DevBenchError as exc:
            await self.send(text_data=json.dumps({"type": "error", **exc.as_dict()}))
        except (ValueError, TypeError, RecursionError):
            await self.send(
                text_data=json.dumps(
                    {"type": "error", "code": "invalid_message", "message": "Not valid JSON."}
                )
            )

    async def disconnect(self, code: int) -> None:
        session, self.session = self.session, None
        if session is not None:
            # Kills the shell's whole process tree; its output ends, and so does the reader.
            await asyncio.to_thread(session.close)
