"""The exec runner: one docker exec, streamed to watchers and into ExecChunk rows.

It runs inside a Celery task on the workspace's node. A reader thread pulls
demultiplexed frames off the engine; the runner thread coalesces them into
chunks, numbers them (seq strictly increasing from 1), publishes them to live
watchers and hands them to an :class:`~execution.persist.OutputStore`, which
stores them behind the live path (and enforces the tenant's output cap by
dropping the oldest chunks). It also beats ``heartbeat_at`` (reconciliation
marks an exec whose runner died ``lost``) and watches for cancellation and the
timeout. The terminal state is written only once every chunk is stored (a short
exec's output, that comes whole with its end, by the same statement).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core import metrics
from core.errors import DevBenchError
from execution import live, notify, state
from execution.coalesce import MAX_DELAY_S, Coalescer, chunk_bytes_for
from execution.drain import drain_deadline
from execution.models import Exec, ExecChunk, ExecStatus, Stream
from execution.persist import OutputStore
from execution.proctree import exec_command, kill_process_tree, subreaper_start_failure
from execution.validation import MARKER_ENV
from workspaces.models import WorkspaceStatus
from workspaces.nodes import workspace_driver
from workspaces.runtime.base import (
    ROOT_USER,
    WORKSPACE_USER,
    ExecOutput,
    ExecSpec,
    RuntimeDriver,
)

logger = logging.getLogger(__name__)

# Output already waiting in the reader is taken together (several chunks) up to
# this much, or until its oldest byte is due, before it is handed on: fewer messages
# and commits, no added latency.
STORE_BATCH_BYTES = 1024 * 1024
# With live watchers (a channel layer across processes) output waits at most this long
# to be coalesced: a watcher sees it within milliseconds; the database write is batched
# behind it anyway.
LIVE_FLUSH_S = 0.005
# Output up to this much is kept by the runner too, and sent with the end to the caller
# waiting for it (one read of the stored output fewer).
KEEP_OUTPUT_BYTES = 64 * 1024
# When a running exec first proves it is alive and checks for a cancel.
FIRST_BEAT_S = 0.2
# After a kill, how long the output may take to end before the runner stops reading.
KILL_DRAIN_S = 10.0
# Engine exit codes for "the process could not be started" (bad program or cwd).
_START_FAILURE_CODES = (126, 127)
_OUTPUT_BYTES: dict[int, Any] = {
    Stream.STDOUT: metrics.EXEC_OUTPUT_BYTES.labels(stream="stdout"),
    Stream.STDERR: metrics.EXEC_OUTPUT_BYTES.labels(stream="stderr"),
}

# Container id -> its runtime; a container never changes runtime.
_runtimes: dict[str, str] = {}
RUNTIME_CACHE_SIZE = 10_000
# Reader -> runner queue items: a frame, or None once the output has ended.
_IDLE: list[tuple[int, bytes]] = []


def exec_user(exec_: Exec) -> str:
    return ROOT_USER if exec_.as_root else WORKSPACE_USER


def worker_name(worker: str = "") -> str:
    return f"{worker or socket.gethostname()}/{threading.current_thread().name}"


@dataclass
class _Timers:
    """When the pump must wake: the next heartbeat, the timeout, the end of the drain."""

    heartbeat_s: float
    next_beat: float
    deadline: float | None
    killed_at: float | None = None

    def wake_at(self, flush_at: float | None) -> float:
        wake = [self.next_beat]
        if self.deadline is not None and self.killed_at is None:
            wake.append(self.deadline)
        if flush_at is not None:
            wake.append(flush_at)
        if self.killed_at is not None:
            wake.append(self.killed_at + KILL_DRAIN_S)
        elif (drain_at := drain_deadline()) is not None:
            wake.append(drain_at)
        return min(wake)


# Engine exec creations running beside their runners' claims (threads made on demand).
_creators = ThreadPoolExecutor(max_workers=32, thread_name_prefix="exec-create")


class ExecRunner:
    def __init__(
        self,
        exec_: Exec,
        *,
        senders: state.Senders,
        driver: RuntimeDriver | None = None,
        worker: str = "",
    ) -> None:
        self.exec = exec_
        self.senders = senders
        self.worker = worker_name(worker)
        self.driver = driver or workspace_driver(exec_.workspace)
        # Read fresh with the exec (``exec_execute``): the policy in force when it starts.
        cap = exec_.tenant.policy.exec_output_cap_bytes
        self.live = notify.live_output()
        self.store = OutputStore(exec_, cap=cap, threaded=self.live)
        self.coalescer = Coalescer(
            max_bytes=chunk_bytes_for(cap),
            max_delay_s=LIVE_FLUSH_S if self.live else MAX_DELAY_S,
        )
        self.next_seq = 1
        self.produced: dict[int, int] = {Stream.STDOUT: 0, Stream.STDERR: 0}
        # The output as stored, per stream, while it stays within KEEP_OUTPUT_BYTES.
        self.kept: tuple[bytearray, bytearray] | None = (bytearray(), bytearray())
        # Frames in the batches the reader got them in (one read of the engine's stream).
        self.frames: queue.Queue[list[tuple[int, bytes]] | None] = queue.Queue(maxsize=256)
        self.stream: ExecOutput | None = None
        self.reader_error: BaseException | None = None
        self.end_reason: ExecStatus | None = None  # set once we kill: cancelled / timed_out
        self.kill_detail = ""
        self.exit_code: int | None = None  # as the engine reported it
        self.shutdown = False  # ended because its worker shut down
        self._stop = threading.Event()
        self.following: live.LiveOutput | None = None

    # --- entry ---------------------------------------------------------------

    def run(self) -> None:
        workspace = self.exec.workspace
        runnable = workspace.status == WorkspaceStatus.RUNNING and bool(workspace.container_id)
        # The engine creates the exec while the claim commits (~2 ms off every start):
        # creating runs nothing. An exec this runner does not claim (cancelled before it
        # started, or started by the other path) is never started; the engine keeps only
        # its record, until the container stops.
        creating = _creators.submit(self._create, workspace.container_id) if runnable else None
        # Watchers may follow the output here from now until its end is committed (a
        # watcher that comes during the claim finds it here too).
        self.following = live.begin(self.exec.public_id) if self.live else None
        try:
            if not state.claim(self.exec, worker=self.worker):
                logger.info("exec %s is not waiting to start; not running it again", self.exec)
                return
            self._run_claimed(creating)
        finally:
            if self.following is not None:
                live.end(self.exec.public_id, self.following)

    def _run_claimed(self, creating: Future[str] | None) -> None:
        workspace = self.exec.workspace
        if creating is None:
            state.finish(
                self.exec,
                ExecStatus.FAILED,
                error_code="workspace_not_running",
                error=f"The workspace is {workspace.status}, not running.",
                senders=self.senders,
            )
            return
        try:
            # The engine's id is informational: written with the first heartbeat or the end.
            self.exec.engine_exec_id = creating.result()
            self.stream = self.driver.exec_stream(self.exec.engine_exec_id)
        except DevBenchError as exc:
            state.finish(
                self.exec,
                ExecStatus.FAILED,
                error_code=exc.code,
                error=exc.message,
                senders=self.senders,
            )
            return
        reader = threading.Thread(target=self._read, name=f"exec-read-{self.exec.public_id}")
        reader.daemon = True
        reader.start()
        try:
            try:
                self._pump()
            finally:
                self._stop.set()
                self.stream.close()
            reader.join(timeout=5)
            self._finish()
        except Exception:
            # Whatever broke (e.g. the database went away mid-run): stop the processes and
            # end the exec if we still can; if not, reconciliation marks it lost.
            logger.exception("runner of %s failed", self.exec)
            self._abort()
            raise

    def _abort(self) -> None:
        try:
            # Nothing is stored after the terminal state: let the store finish or fail first.
            self.store.close(raise_error=False)
            self._flush_held()
            if self.end_reason is None:
                self._kill(ExecStatus.FAILED)
            state.finish(
                self.exec,
                ExecStatus.FAILED,
                error_code="internal_error",
                error="The runner failed; output stored until then is kept.",
                senders=self.senders,
            )
        except Exception:
            logger.exception("could not end exec %s after its runner failed", self.exec)

    def _runtime(self) -> str:
        """The container runtime of the workspace (runc, runsc...), asked once per container."""
        container_id = self.exec.workspace.container_id
        runtime = _runtimes.get(container_id)
        if runtime is None:
            raw = self.driver.inspect(container_id).raw
            runtime = str(raw.get("HostConfig", {}).get("Runtime") or "")
            if len(_runtimes) > RUNTIME_CACHE_SIZE:
                _runtimes.clear()
            _runtimes[container_id] = runtime
        return runtime

    def _create(self, container_id: str) -> str:
        return self.driver.exec_create(container_id, self._spec())

    def _spec(self) -> ExecSpec:
        env = dict(self.exec.env or {})
        env[MARKER_ENV] = self.exec.public_id
        return ExecSpec(
            cmd=exec_command(list(self.exec.cmd), runtime=self._runtime()),
            env=env,
            workdir=self.exec.cwd or None,
            user=exec_user(self.exec),
        )

    # --- reading -------------------------------------------------------------

    def _read(self) -> None:
        assert self.stream is not None
        try:
            for batch in self.stream.batches():
                if not self._put(batch):
                    return
        except BaseException as exc:  # reported by the runner thread
            self.reader_error = exc
        finally:
            self._put(None)

    def _put(self, item: list[tuple[int, bytes]] | None) -> bool:
        # Blocks while the runner is busy storing (back-pressure on the engine),
        # but never past the runner giving up on the output.
        while not self._stop.is_set():
            try:
                self.frames.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        """Move frames from the reader into stored chunks until the output ends, keeping
        the heartbeat, the timeout and a requested cancel on time meanwhile."""
        started = time.monotonic()
        heartbeat_s = float(settings.DEVBENCH_EXEC_HEARTBEAT_S)
        timers = _Timers(
            heartbeat_s=heartbeat_s,
            # The first beat soon, not at once: it catches a cancel that raced with the
            # start (the kill task may have found nothing to kill yet), and a short exec
            # ends before it and saves its two queries.
            next_beat=started + min(FIRST_BEAT_S, heartbeat_s),
            deadline=started + self.exec.timeout_s if self.exec.timeout_s else None,
        )
        while self._keep_time(timers):
            try:
                wait_s = max(0.0, timers.wake_at(self.coalescer.next_deadline()) - time.monotonic())
                batch = self.frames.get(timeout=wait_s)
            except queue.Empty:
                batch = _IDLE
            if batch is None:
                return
            self._take(batch)
            if self.coalescer.due(time.monotonic()):
                self._emit(self.coalescer.take())

    def _keep_time(self, timers: _Timers) -> bool:
        """Heartbeat (which reports a cancel), timeout and the worker's drain; False once
        the output has not ended within KILL_DRAIN_S of a kill."""
        self.store.check()
        now = time.monotonic()
        if now >= timers.next_beat:
            timers.next_beat = now + timers.heartbeat_s
            if self._beat() and timers.killed_at is None:
                timers.killed_at = self._kill(ExecStatus.CANCELLED)
        if timers.deadline is not None and now >= timers.deadline and timers.killed_at is None:
            timers.killed_at = self._kill(ExecStatus.TIMED_OUT)
        drain_at = drain_deadline()
        if drain_at is not None and now >= drain_at and timers.killed_at is None:
            # The worker is shutting down and this exec did not end in time.
            self.shutdown = True
            timers.killed_at = self._kill(ExecStatus.FAILED)
        if timers.killed_at is not None and time.monotonic() - timers.killed_at > KILL_DRAIN_S:
            logger.warning("output of %s did not end after the kill", self.exec)
            return False
        return True

    def _take(self, batch: list[tuple[int, bytes]]) -> None:
        """Accept a batch of frames and what is already waiting too, before deciding to
        store."""
        next_batch: list[tuple[int, bytes]] | None = batch
        while next_batch:
            for frame in next_batch:
                self._accept(frame)
            if self.coalescer.pending_bytes >= STORE_BATCH_BYTES or self._overdue():
                break
            try:
                next_batch = self.frames.get_nowait()
            except queue.Empty:
                break
            if next_batch is None:
                self.frames.put(None)  # seen again by _pump

    def _overdue(self) -> bool:
        # While output keeps flowing the reader's queue is never empty: without this,
        # the output of a fast stream waited until STORE_BATCH_BYTES had been read,
        # well past LIVE_FLUSH_S, and watchers got it in bursts of that size.
        deadline = self.coalescer.next_deadline()
        return deadline is not None and time.monotonic() >= deadline

    def _accept(self, frame: tuple[int, bytes]) -> None:
        stream, data = frame
        self.produced[stream] = self.produced.get(stream, 0) + len(data)
        _OUTPUT_BYTES[stream].inc(len(data))
        self.coalescer.add(stream, data, time.monotonic())

    # --- storing -------------------------------------------------------------

    def _emit(self, chunks: list[tuple[int, bytes]], *, last: bool = False) -> None:
        """Number the chunks, show them to live watchers, then hand them to the store
        (``last``: the output has ended)."""
        if not chunks:
            return
        numbered = [(self.next_seq + i, stream, data) for i, (stream, data) in enumerate(chunks)]
        self.next_seq += len(numbered)
        if self.following is not None:
            self.following.add(numbered)
        if self.live:
            notify.publish_output(self.exec.public_id, numbered)
        self.store.put(numbered, last=last)
        self._keep(chunks)

    def _keep(self, chunks: list[tuple[int, bytes]]) -> None:
        if self.kept is None:
            return
        for stream, data in chunks:
            self.kept[1 if stream == Stream.STDERR else 0].extend(data)
        if len(self.kept[0]) + len(self.kept[1]) > KEEP_OUTPUT_BYTES:
            self.kept = None

    def _kept_output(self) -> tuple[bytes, bytes] | None:
        """All the stored output, if the runner kept it (none dropped by the cap)."""
        if self.kept is None or self.store.out.truncated:
            return None
        return bytes(self.kept[0]), bytes(self.kept[1])

    def _accounting(self) -> dict[str, object]:
        return {
            **self.store.accounting(),
            "engine_exec_id": self.exec.engine_exec_id,
            "stdout_bytes": self.produced.get(Stream.STDOUT, 0),
            "stderr_bytes": self.produced.get(Stream.STDERR, 0),
        }

    def _beat(self) -> bool:
        """Touch the heartbeat; True when the processes must stop (a cancel was requested,
        or someone else ended the exec)."""
        return state.heartbeat(self.exec.pk, self._accounting())

    # --- ending --------------------------------------------------------------

    def _kill(self, reason: ExecStatus) -> float:
        self.end_reason = reason
        result = kill_process_tree(
            driver=self.driver,
            container_id=self.exec.workspace.container_id,
            exec_public_id=self.exec.public_id,
            user=exec_user(self.exec),
        )
        if not result.cleared:
            self.kill_detail = result.detail or "some processes may be left"
        return time.monotonic()

    def _finish(self) -> None:
        self._emit(self.coalescer.take(final=True), last=True)
        exit_code: int | None = None
        pid = -1
        error_code, error = "", ""
        try:
            final = self.driver.exec_wait(self.exec.engine_exec_id)
            exit_code, pid = final.exit_code, final.pid
            self.exit_code = exit_code
        except DevBenchError as exc:
            error_code, error = exc.code, exc.message
        # The engine was asked while the last chunks were being stored; the terminal
        # state waits for them.
        self.store.close()
        self.exec.last_seq = self.store.out.last_seq
        if self.shutdown:
            self._end(
                ExecStatus.FAILED,
                exit_code=exit_code,
                error_code="worker_shutdown",
                error="The worker running it shut down before it ended; output until "
                "then is kept. " + self.kill_detail,
            )
        elif self.end_reason is not None:
            self._end(
                self.end_reason,
                exit_code=exit_code,
                error_code="processes_left" if self.kill_detail else "",
                error=self.kill_detail,
            )
        elif isinstance(self.reader_error, DevBenchError):
            err = self.reader_error
            self._end(ExecStatus.FAILED, error_code=err.code, error=err.message)
        elif self.reader_error is not None:
            self._end(ExecStatus.FAILED, error_code="internal_error", error="reader failed")
            logger.error("reading exec %s failed", self.exec, exc_info=self.reader_error)
        elif error_code:
            self._end(ExecStatus.FAILED, error_code=error_code, error=error)
        elif exit_code in _START_FAILURE_CODES and (start_failure := self._start_failure(pid)):
            self._end(
                ExecStatus.FAILED,
                exit_code=exit_code,
                error_code="exec_start_failed",
                error=start_failure,
            )
        else:
            self._end(ExecStatus.COMPLETED, exit_code=exit_code)

    def _end(self, status: ExecStatus, **kwargs: Any) -> None:
        """The terminal UPDATE, carrying the output accounting; if another actor ended the
        exec first (e.g. marked it lost), the accounting is still written.

        An exec this runner did not kill ends this way only if nobody asked to cancel it
        (checked by the UPDATE itself): if someone did, the kill task may have stopped it
        before this runner noticed, and it ends cancelled."""
        accounting = self._accounting()
        last_seq = self.exec.last_seq
        output = self._kept_output()
        unless_cancelled = self.end_reason is None
        # A short exec's output, held by the store, goes in with this statement.
        held = self.store.take_held()
        try:
            ended = state.end_run(
                self.exec,
                status,
                last_seq=last_seq,
                unless_cancel_requested=unless_cancelled,
                fields=accounting,
                output=output,
                chunks=held,
                senders=self.senders,
                **kwargs,
            )
        except BaseException:
            self.store.give_back(held)  # not stored: the abort stores them
            raise
        if ended:
            return
        if unless_cancelled and state.end_run(
            self.exec,
            ExecStatus.CANCELLED,
            last_seq=last_seq,
            exit_code=self.exit_code,
            fields=accounting,
            output=output,
            senders=self.senders,
        ):
            return
        Exec.objects.filter(pk=self.exec.pk).update(**accounting)

    def _start_failure(self, pid: int) -> str | None:
        """Why the command could not be started (bad program or cwd), or None if it ran."""
        first_line = self._first_output_line()
        if pid == 0:  # the engine could not start the exec at all
            return first_line
        return subreaper_start_failure(first_line)

    def _flush_held(self) -> None:
        try:
            self.store.flush_held()
        except Exception:
            logger.exception("could not store the last output of %s", self.exec)

    def _first_output_line(self) -> str:
        self.store.flush_held()  # read back below
        first = (
            ExecChunk.objects.filter(exec_id=self.exec.pk)
            .order_by("seq")
            .values_list("data", flat=True)
        ).first()
        text = bytes(first or b"").decode(errors="replace").strip()
        return text.splitlines()[0][:1000] if text else "The command could not be started."


def run_exec(exec_: Exec, *, senders: state.Senders, worker: str = "") -> None:
    ExecRunner(exec_, senders=senders, worker=worker).run()
