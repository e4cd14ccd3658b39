"""Storing an exec's output behind the live path.

The runner numbers each chunk, publishes it to live watchers through the
channel layer, then hands it here. A thread of its own writes the chunks in
seq order, every chunk that waited since the last write in one transaction
(seq strictly increasing from 1; past the tenant's cap the oldest chunks are
dropped), then wakes pollers, which read the database. While output keeps
coming, writes are WRITE_INTERVAL_S apart (sooner once WRITE_BYTES wait): a fast
stream costs a few transactions and wake-ups, not one per chunk. So watchers never
wait for the database, the engine stream is never held up by a commit, and a slow
database or a fast stream only makes the batches larger.

``close()`` returns once every chunk handed over is stored (the runner writes
the terminal state only after it), or raises what broke the storing. The one
exception: a short exec's output, all of it handed over with its end (``last``),
no more than HOLD_MAX_BYTES and nothing stored before, is held instead, and the
runner writes it in its terminal statement (``execution.state.end_run``): one
statement, no thread started for one write. Held chunks are accounted as stored;
whoever takes them (:meth:`OutputStore.take_held`) stores them or gives them back,
and :meth:`OutputStore.flush_held` stores what is still held. Chunks
handed over but not yet stored when the worker process dies are lost with it,
like output the engine had not yet sent: what is stored is always a gap-free
prefix. Without a channel layer that crosses processes (embedded mode) there is
no live path and no thread: each hand-over is stored at once, in the caller's
thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field

from django.db import connection, transaction

from execution import notify
from execution.models import Exec, ExecChunk, ExecStatus

logger = logging.getLogger(__name__)

# How much handed-over output may wait for the database before the runner blocks
# (back-pressure reaches the engine stream through the reader's queue).
MAX_PENDING_BYTES = 8 * 1024 * 1024
# A short exec's whole output, handed over with its end, up to this much is stored by
# its terminal statement (see the module's docstring).
HOLD_MAX_BYTES = 64 * 1024
# While output keeps coming, a write waits this long after the previous one (or until
# WRITE_BYTES are pending): a fast stream is stored in a few large transactions, not one
# per chunk, each with its commit and its wake-up of every poller and watcher. The first
# output after a quiet spell is written at once; watchers get output live, not from here.
WRITE_INTERVAL_S = 0.025
WRITE_BYTES = 1024 * 1024


@dataclass
class StoredOutput:
    """What has been stored so far (mirrors the row's accounting columns)."""

    last_seq: int = 0
    first_seq: int = 1
    stored_bytes: int = 0
    truncated: bool = False
    sizes: collections.deque[tuple[int, int]] = field(default_factory=collections.deque)


class OutputStore:
    def __init__(self, exec_: Exec, *, cap: int, threaded: bool) -> None:
        self.exec = exec_
        self.cap = cap
        self.out = StoredOutput()
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._pending: list[tuple[int, int, bytes]] = []
        self._pending_bytes = 0
        self._closing = False
        self._threaded = threaded
        self._thread: threading.Thread | None = None
        self._held: list[tuple[int, int, bytes]] = []

    # --- the runner's side -------------------------------------------------------

    def put(self, chunks: list[tuple[int, int, bytes]], *, last: bool = False) -> None:
        """Hand over numbered ``(seq, stream, data)`` chunks; raises if storing broke.
        ``last``: the output has ended (a short one may be held for the terminal
        statement)."""
        if not chunks:
            return
        if last and self._may_hold(chunks):
            with self._cond:
                self._held = list(chunks)
                self._account(chunks, drop_through=0)
            return
        if not self._threaded:
            self._store(chunks)
            return
        if self._thread is None:  # started with the first output: most execs have little
            self._thread = threading.Thread(
                target=self._run, name=f"exec-store-{self.exec.public_id}", daemon=True
            )
            self._thread.start()
        size = sum(len(data) for _, _, data in chunks)
        with self._cond:
            while self._pending_bytes > MAX_PENDING_BYTES and self.error is None:
                self._cond.wait()
            self._raise_if_failed()
            self._pending.extend(chunks)
            self._pending_bytes += size
            self._cond.notify_all()

    def check(self) -> None:
        """Raise what broke the storing, if anything did."""
        with self._cond:
            self._raise_if_failed()

    def close(self, *, raise_error: bool = True) -> None:
        """Wait until every chunk handed over is stored; raise if one could not be."""
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
        if raise_error:
            self.check()

    def take_held(self) -> list[tuple[int, int, bytes]]:
        """The held chunks, no longer held: the caller stores them (or gives them back)."""
        with self._cond:
            held, self._held = self._held, []
        return held

    def give_back(self, held: list[tuple[int, int, bytes]]) -> None:
        """Chunks taken with :meth:`take_held` that were not stored after all."""
        with self._cond:
            self._held = held + self._held

    def flush_held(self) -> None:
        """Store what is still held (a runner that does not end the exec itself)."""
        held = self.take_held()
        if held:
            with transaction.atomic():
                insert_chunks(chunk_rows(self.exec.pk, held))
            notify.publish(self.exec.public_id, last_seq=held[-1][0], status=ExecStatus.RUNNING)

    def accounting(self) -> dict[str, object]:
        with self._cond:
            return {
                "last_seq": self.out.last_seq,
                "first_seq": self.out.first_seq,
                "truncated": self.out.truncated,
            }

    def _may_hold(self, chunks: list[tuple[int, int, bytes]]) -> bool:
        # Only where a live path makes storing threaded (a thread per write otherwise),
        # only on PostgreSQL (the terminal statement), only if nothing was stored before
        # and the cap drops nothing.
        if not self._threaded or self._thread is not None or self._held or self.out.last_seq:
            return False
        size = sum(len(data) for _, _, data in chunks)
        return connection.vendor == "postgresql" and size <= min(HOLD_MAX_BYTES, self.cap)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError("storing the exec's output failed") from self.error

    # --- the storing thread --------------------------------------------------------

    def _wait_before_write(self, written_at: float) -> float | None:
        """How long to wait before writing what is pending (None: until more comes)."""
        if not self._pending:
            return None
        if self._pending_bytes >= WRITE_BYTES:
            return 0
        return written_at + WRITE_INTERVAL_S - time.monotonic()

    def _run(self) -> None:
        written_at = -WRITE_INTERVAL_S
        try:
            while True:
                with self._cond:
                    while not self._closing:
                        wait_s = self._wait_before_write(written_at)
                        if wait_s is not None and wait_s <= 0:
                            break
                        self._cond.wait(wait_s)
                    if not self._pending:
                        return
                    batch, self._pending, self._pending_bytes = self._pending, [], 0
                    self._cond.notify_all()
                self._store(batch)
                written_at = time.monotonic()
        except BaseException as exc:
            logger.exception("storing the output of %s failed", self.exec)
            with self._cond:
                self.error = exc
                self._cond.notify_all()
        finally:
            connection.close()  # this thread's connection goes back to the pool

    def _account(self, chunks: list[tuple[int, int, bytes]], *, drop_through: int) -> None:
        """Record ``chunks`` as stored (the cap's drops through ``drop_through`` done)."""
        out = self.out
        for seq, _, data in chunks:
            out.sizes.append((seq, len(data)))
            out.stored_bytes += len(data)
        while out.sizes and out.sizes[0][0] <= drop_through:
            out.stored_bytes -= out.sizes.popleft()[1]
        out.last_seq = chunks[-1][0]
        if drop_through:
            out.first_seq, out.truncated = drop_through + 1, True

    def _store(self, chunks: list[tuple[int, int, bytes]]) -> None:
        out = self.out
        rows = chunk_rows(self.exec.pk, chunks)
        sizes = collections.deque(out.sizes)
        stored_bytes = out.stored_bytes
        for seq, _, data in chunks:
            sizes.append((seq, len(data)))
            stored_bytes += len(data)
        drop_through = 0
        while stored_bytes > self.cap and len(sizes) > 1:
            seq, size = sizes.popleft()
            stored_bytes -= size
            drop_through = seq
        last_seq = chunks[-1][0]
        with transaction.atomic():
            insert_chunks(rows)
            if drop_through:
                # Keep the tail: the oldest chunks go first.
                ExecChunk.objects.filter(exec_id=self.exec.pk, seq__lte=drop_through).delete()
                Exec.objects.filter(pk=self.exec.pk).update(
                    first_seq=drop_through + 1, truncated=True, last_seq=last_seq
                )
        with self._cond:
            self._account(chunks, drop_through=drop_through)
        notify.publish(self.exec.public_id, last_seq=last_seq, status=ExecStatus.RUNNING)


def chunk_rows(exec_pk: int, chunks: list[tuple[int, int, bytes]]) -> list[ExecChunk]:
    return [ExecChunk(exec_id=exec_pk, seq=seq, stream=st, data=data) for seq, st, data in chunks]


def insert_chunks(rows: list[ExecChunk]) -> None:
    """Insert chunk rows; on PostgreSQL with binary parameters in one pipelined batch.

    Django's default client-side binding would spell every byte of a
    chunk out as an escaped literal in the SQL text, which the server must parse.
    """
    if connection.vendor != "postgresql":
        ExecChunk.objects.bulk_create(rows)
        return
    import psycopg

    meta = ExecChunk._meta
    column = {field.name: field.column for field in meta.concrete_fields}
    columns = ", ".join(str(column[name]) for name in ("exec", "seq", "stream", "data"))
    sql = f"INSERT INTO {meta.db_table} ({columns}) VALUES (%s, %s, %s, %b)"  # noqa: S608
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.executemany(sql, [(r.exec_id, r.seq, r.stream, r.data) for r in rows])
