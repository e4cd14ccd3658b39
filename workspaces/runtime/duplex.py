"""One connection read by one thread and written by another: the shell's, on both ends.

OpenSSL forbids using one ``SSL`` object from two threads at once, and Python 3.11's
``SSLSocket`` adds no lock of its own: a blocking ``recv`` in the reading thread and a
``sendall`` in the writing thread run ``SSL_read`` and ``SSL_write`` concurrently, which
can corrupt the connection's TLS state (a "bad record MAC", a dropped connection). So the
socket is non-blocking, every call into it is made under one lock, and both directions
wait for the socket in ``select`` *outside* the lock, so a writer stuck on a full send
buffer never keeps the reader from draining the other direction (both ends of a shell
may be writing at once). A plain TCP socket goes the same way; it costs nothing there.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading

# How long one wait lasts before the state is checked again (a close from another
# thread also wakes it: the shutdown makes the socket readable and writable).
_WAIT_S = 1.0


class SocketDuplex:
    def __init__(self, sock: socket.socket, *, leftover: bytes = b"") -> None:
        """``leftover``: bytes already read off ``sock`` past a protocol head."""
        self._sock = sock
        self._leftover = leftover
        self._lock = threading.Lock()
        sock.settimeout(0.0)

    def recv(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` once some arrived; ``b""`` at the end of the stream."""
        if self._leftover:
            data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
            return data
        while True:
            with self._lock:
                try:
                    return self._sock.recv(max_bytes)
                except (ssl.SSLWantReadError, BlockingIOError):
                    readable, writable = True, False
                except ssl.SSLWantWriteError:  # TLS bookkeeping must go out first
                    readable, writable = False, True
                except OSError:
                    return b""  # reset, or shut down by close() from another thread
            self._wait(readable=readable, writable=writable)

    def recv_exactly(self, size: int) -> bytes:
        """``size`` bytes, or fewer only if the stream ended first."""
        parts, missing = [], size
        while missing:
            part = self.recv(missing)
            if not part:
                break
            parts.append(part)
            missing -= len(part)
        return b"".join(parts)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    # A retry after "want" offers the same bytes again, as OpenSSL requires.
                    view = view[self._sock.send(view) :]
                    continue
                except (ssl.SSLWantWriteError, BlockingIOError):
                    readable, writable = False, True
                except ssl.SSLWantReadError:
                    readable, writable = True, False
            self._wait(readable=readable, writable=writable)

    def _wait(self, *, readable: bool, writable: bool) -> None:
        # Closed meanwhile (OSError, ValueError): the next call into the socket says so.
        with contextlib.suppress(OSError, ValueError):
            select.select(
                [self._sock] if readable else [], [self._sock] if writable else [], [], _WAIT_S
            )
